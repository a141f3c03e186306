"""FOUNDRY_ENGINE=batched: a continuous-batching decoder over plain ONNX Runtime for the served model folder, as a
loopback OpenAI-compatible chat server the gateway forwards to instead of the Foundry Local runtime's own service
(issue 24). Foundry Local still finds, downloads and registers the model; this serves it.

Why not the runtime itself: its web service decodes one request at a time (its aggregate tokens/s stays flat from 1
to 8 streams), and its batching backend needs PagedAttention, which has no CPU kernel. Why this works: the models
ONNX Runtime GenAI's builder exports use GroupQueryAttention, whose CPU kernel reads every row's length from the
attention mask, so rows of different lengths share one decode step (model.py, slots.py).
"""
