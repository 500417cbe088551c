"""Helpers shared by the test suites: tiny real ONNX models and a real agent process."""
