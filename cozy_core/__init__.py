"""The few contracts every layer shares: CozyEngine's error type and the engine plugin base.

Why a package below `cozy_media` and `cozy_actors`: audio engines (cozy_media) and LLM/tool
engines (cozy_actors) implement the same plugin contract and raise the same coded errors, and
cozy_media may not import cozy_actors. Nothing here imports anything of ours.
"""
