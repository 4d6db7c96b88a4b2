"""Model definitions, weights, ONNX export and runners.

The pipeline talks to networks only through a :class:`engines.runner.Runner`:
it hands over a batch and gets named outputs back, whichever backend
(ONNX Runtime on the CPU, PyTorch, TensorRT) runs it.
"""
