"""The provider agent: registers a machine, heartbeats, runs benchmark jobs, answers challenges.

No Django here: it runs on provider machines with requests, numpy and tqdm (torch/cupy
optional), and talks to the API only over HTTP(S)+JSON with its own agent credential.
"""

AGENT_VERSION = "0.1.0"
