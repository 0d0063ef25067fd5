"""Offline side: dataset readers, the synthetic city, feature building, training and evaluation."""
