"""The environment upstream aethergraph runs in: no network, nothing outside its workspace.

Its default embeds every memory event through a remote API (it stalls ~7 s per call offline),
so search is off; the knowledge-base search backend refuses to build without an embedding
client, so it is off too; LLM and embedding clients are not constructed at all. The workspace
(a fresh temporary directory per measurement) is set by run.py, or by ``_upstream.py`` when a
script is run by hand. Stdlib only: imported by run.py and by the peers' scripts.
"""

OFFLINE_ENV = {
    "AETHERGRAPH_SEARCH__BACKEND": "none",
    "AETHERGRAPH_KNOWLEDGE__SEARCH__BACKEND": "none",
    "AETHERGRAPH_LLM__ENABLED": "false",
    "AETHERGRAPH_EMBED__ENABLED": "false",
    # LangGraph / LangSmith: tracing stays off.
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}


def workspace_env(workspace: str) -> dict[str, str]:
    """Point every place upstream reads configuration from or writes to at ``workspace``."""
    return {"AETHERGRAPH_WORKSPACE": workspace, "XDG_CONFIG_HOME": workspace}
