"""Training configurations: the defaults, the named recipes (TOML files here) and config files."""
