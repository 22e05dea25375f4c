"""xor_gpu: the classic XOR network in Theano, trained identically on CPU and GPU."""
__version__ = "0.1.0"
