// Package mcp is the gateway's MCP backend (`backends[].mcp`): it serves
// one MCP endpoint to clients and federates the tools, prompts and
// resources of several MCP servers (targets) behind it.
//
// # Shape
//
//	client ──streamable HTTP (or legacy SSE at …/sse)──▶ Backend
//	         │ one mcp.Server; a receiving middleware answers tools/*,
//	         │ prompts/* and resources/* itself
//	         ├──▶ Target "everything": stdio child process (supervised)
//	         ├──▶ Target "remote":     streamable HTTP upstream
//	         ├──▶ Target "legacy":     SSE upstream
//	         └──▶ Target "petstore":   OpenAPI operations as tools, an MCP
//	                                   server in this process (mcp/openapi)
//
// The official MCP Go SDK does the protocol on both sides: sessions
// (Mcp-Session-Id), JSON-RPC framing, size limits and error answers for
// malformed input. This package adds federation, authorization and
// process supervision.
//
// # Hot path
//
// A plain tools/call on a streamable HTTP session skips the SDK's server
// (fastpath.go): the HTTP handler reads the body once, decodes only the id,
// method and params.name, applies the same routing, mcpAuthorization,
// metrics and access log as any call, and writes the answer back itself,
// as application/json, or as an event stream if the target logs or asks
// something about the call before answering (those messages then come
// first, and the client's answers to the target's requests are taken by
// the fast path too). "Plain" is: one JSON-RPC request, a string or
// integer id, params with only name and arguments (no _meta: a progress
// token goes the SDK way), on a session this gateway opened, protocol
// version up to 2025-11-25, the Content-Type and Accept the SDK asks for.
// Anything else, malformed input included, goes to the SDK with the body
// as read, so its answers and errors are the SDK's. Because fast-path
// calls never reach the SDK's handler, the idle timeout
// (config.mcp.sessionTtl) is kept by this package, not by the SDK.
//
// A stdio target's pipes are the gateway's own too (stdio.go): tools/call
// goes to it as a raw JSON-RPC request whose answer is handed, as the
// target's bytes, straight to the waiting call and on to the client
// (neither decoded into SDK types nor re-encoded). Everything else on that
// pipe is the SDK client's.
//
// # Names (prefixMode)
//
// A target's tool "echo" is exposed as:
//
//	always       "<target>_echo", even with one target
//	conditional  "echo" with one target, "<target>_echo" with several (default)
//	never        "echo"; if two targets have "echo", the first target in
//	             config order owns it (and a warning is logged)
//
// In always and never modes a name depends only on its own target, so
// adding a target never renames existing tools (agentgateway#495). Prompts
// are named the same way; resources keep their URIs and are routed by the
// target that listed them. A call is routed to the target that owns the
// name; an unknown name is an MCP invalid-params error.
//
// # failureMode
//
// failClosed (default): a target that cannot be started or listed fails
// the initialize or list request. failOpen: it is skipped, and only if
// every target fails is the request an error.
//
// # mcpAuthorization
//
// Rules (package gateway/cel, MCP phase) see the caller's source.*, request.*,
// jwt.* and extauthz.*, plus mcp.method and one of mcp.tool, mcp.prompt or
// mcp.resource ({name, target}, resources also {uri}); names are the
// target's own (unprefixed). A tool, prompt or resource the rules deny is
// left out of lists, and calling it is an MCP error that names the denial
// ("tool \"echo\" on target \"everything\" denied by mcpAuthorization").
//
// # Stdio supervision
//
// A stdio target is started on first use, in its own process group, with
// only PATH, HOME and the target's `env` in its environment. With
// `reuse: true` (default) one process serves every session; with
// `reuse: false` each MCP session gets its own process, killed when the
// session ends. A process that dies is restarted with exponential backoff
// (100ms doubling to 30s; reset after 30s of healthy running); a call
// that arrives meanwhile waits for the restart. Close (gateway shutdown or
// a reload that replaces the config) kills every process group and waits
// for them, so none outlives the gateway.
//
// # Observability
//
// Metrics (on the gateway's registry): tailgate_gateway_mcp_requests_total
// {method,target,tool}, tailgate_gateway_mcp_tool_call_duration_seconds
// {target,tool}, tailgate_gateway_mcp_denials_total{kind,target},
// tailgate_gateway_mcp_target_starts_total{target,result}. Each tool call,
// prompt get and resource read (and each denial) is also one "mcp" line on
// the access log.
package mcp
