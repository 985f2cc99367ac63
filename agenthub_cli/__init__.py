"""The `agenthub` command-line client and MCP server: a light package over the HTTP API that
imports nothing of the server (no Django), so it installs on its own (`agenthub-cli`).

`client` talks to the API, `config` keeps the saved login, `output` prints, `commands` holds one
function per command, `main` parses the arguments, `mcp_server` serves `agenthub mcp`.
"""
