"""OpenAI Realtime sessions as conversation actors: session config, conversation items, responses.

The actor side speaks GA event names as plain dicts; the transport only maps names for beta
clients and moves frames. One handler per client event type (speaches' good idea), one small
module per concern.
"""
