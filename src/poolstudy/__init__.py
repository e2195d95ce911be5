"""poolstudy: what does a pooling layer do in a CNN, and can a stride-2 convolution replace it?"""

__version__ = "0.1.0"
