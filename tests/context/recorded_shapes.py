"""Response bodies as the services' public docs and reference clients show them (values from the
docs' examples), answered by the recording server in tests/context/test_adapters.py.

Sources:
- Mem0: docs.mem0.ai api-reference "Add Memories" (POST /v1/memories/ 200 response), quickstart
  (search output `{"results": [...]}`), "Search Memories (v2)" (`{"memories": [...]}`), v1 search
  (a bare list), and the self-hosted server (mem0ai/mem0 server/main.py: POST /memories, POST /search).
- Memobase: docs/site/openapi.json in memodb-io/memobase (BaseResponse envelope data/errno/errmsg,
  IdResponse, BlobInsertResponse, UserProfileResponse with ProfileData) and its Python client
  (src/client/memobase/core/async_entry.py: paths, `{"blob_type": "chat", "blob_data": {"messages"}}`).
- Cognee: docs.cognee.ai api-reference "Search" (`[{"search_result", "dataset_id", "dataset_name"}]`),
  the cognify example (`{"status", "pipeline_run_id"}`), the add router (multipart `data` + datasetName).
"""

from __future__ import annotations

MEM0_ADD = [
    {"id": "mem_01JF8ZS4Y0R0SPM13R5R6H32CJ", "event": "ADD", "data": {"memory": "The user moved to Austin in 2025."}}
]

MEM0_SEARCH_V2 = {
    "results": [
        {
            "id": "14e1b28a-2014-40ad-ac42-69c9ef42193d",
            "memory": "Allergic to nuts",
            "user_id": "user123",
            "categories": ["health"],
            "created_at": "2025-10-22T04:40:22.864647-07:00",
            "score": 0.30,
        },
        {
            "id": "ea925981-272f-40dd-b576-be64e4871429",
            "memory": "Is a vegetarian",
            "user_id": "user123",
            "categories": ["food"],
            "created_at": "2025-10-22T04:40:22.864647-07:00",
            "score": 0.21,
        },
    ]
}

MEM0_SEARCH_V2_MEMORIES = {
    "memories": [
        {
            "id": "ea925981-272f-40dd-b576-be64e4871429",
            "memory": "Likes to play cricket and plays cricket on weekends.",
            "metadata": {"category": "hobbies"},
            "score": 0.32116443111457704,
            "created_at": "2024-07-26T10:29:36.630547-07:00",
            "updated_at": None,
            "user_id": "alice",
            "agent_id": "sports-agent",
        }
    ]
}

MEM0_SEARCH_V1 = [
    {
        "id": "ea925981-272f-40dd-b576-be64e4871429",
        "memory": "Likes to play cricket and plays cricket on weekends.",
        "user_id": "alice",
        "score": 0.32116443111457704,
    }
]

MEM0_OSS_SEARCH = {
    "results": [
        {
            "id": "f492f40e-1378-4d39-a554-514a4577e56c",
            "memory": "Likes singing",
            "hash": "f97794dfccd9425157d917633f58d99d",
            "metadata": None,
            "score": 0.465090811252594,
            "created_at": "2025-12-29T22:45:20.890865-08:00",
            "updated_at": None,
            "user_id": "u1",
        }
    ]
}

MEMOBASE_OK = {"data": None, "errno": 0, "errmsg": ""}
MEMOBASE_USER_MISSING = {"data": None, "errno": 404, "errmsg": "User not found"}


def memobase_id(uid: str) -> dict[str, object]:
    return {"data": {"id": uid}, "errno": 0, "errmsg": ""}


MEMOBASE_INSERT = {"data": {"id": "2a4f3c66-2a3e-4f0b-9d41-5c1f3a5e2b10", "chat_results": []}, "errno": 0, "errmsg": ""}
MEMOBASE_FLUSH = {"data": [], "errno": 0, "errmsg": ""}
MEMOBASE_PROFILE = {
    "data": {
        "profiles": [
            {
                "id": "0b6f3c1e-8a7d-4d3e-9f6a-2b1c0d9e8f7a",
                "content": "Gus",
                "created_at": "2025-01-10T08:00:00Z",
                "updated_at": "2025-01-10T08:00:00Z",
                "attributes": {"topic": "basic_info", "sub_topic": "name"},
            },
            {
                "id": "1c7a4d2f-9b8e-4e4f-8a7b-3c2d1e0f9a8b",
                "content": "allergic to nuts",
                "created_at": "2025-01-10T08:00:00Z",
                "updated_at": "2025-01-10T08:00:00Z",
                "attributes": {"topic": "health", "sub_topic": "allergies"},
            },
        ]
    },
    "errno": 0,
    "errmsg": "",
}

COGNEE_ADD = {
    "status": "PipelineRunCompleted",
    "pipeline_run_id": "550e8400-e29b-41d4-a716-446655440000",
    "dataset_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    "dataset_name": "tea_notes",
}
COGNEE_COGNIFY = {"status": "completed", "pipeline_run_id": "550e8400-e29b-41d4-a716-446655440000"}
COGNEE_SEARCH_CHUNKS = [
    {
        "search_result": [
            {
                "id": "7f0c1d2e-3b4a-5c6d-7e8f-9a0b1c2d3e4f",
                "text": "Green tea is steamed or pan-fired.",
                "chunk_index": 0,
            },
            {
                "id": "8a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                "text": "Sencha is the most common green tea.",
                "chunk_index": 1,
            },
        ],
        "dataset_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
        "dataset_name": "tea_notes",
    }
]
COGNEE_SEARCH_COMPLETION = [
    {
        "search_result": ["Cognee turns documents into a knowledge graph."],
        "dataset_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
        "dataset_name": "tea_notes",
    }
]
