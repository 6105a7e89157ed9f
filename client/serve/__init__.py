"""`ppatch serve`: an OpenAI-compatible server for a local model with its installed patches.

The server (`ppatch.serve.server`, `ppatch.serve.app`) needs the `serve` extra: FastAPI,
uvicorn and prometheus-client beside torch and transformers. The embeddings for vLLM's
`prompt_embeds` input need only torch.
"""

from ppatch.serve.prompt_embeds import encode_prompt_embeds, prompt_embeds

__all__ = ["encode_prompt_embeds", "prompt_embeds"]
