"""Readers and writers for each digit data format: IDX, npz, Kaggle CSV and image folders."""
