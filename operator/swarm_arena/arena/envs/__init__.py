"""Built-in environments (PettingZoo `ParallelEnv`s with a fast array path)."""
