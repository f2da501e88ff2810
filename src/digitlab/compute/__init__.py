"""Keras and the machine it runs on: importing Keras quietly, threads and devices, Ray."""
