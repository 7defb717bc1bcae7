"""Load tests (Locust), scenario runners and the benchmark against the naive PyTorch baseline."""
