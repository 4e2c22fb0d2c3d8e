package mcp

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
)

// prefixed reports whether exposed names carry the target's name.
func (b *Backend) prefixed() bool {
	switch b.opts.PrefixMode {
	case Always:
		return true
	case Never:
		return false
	}
	return len(b.targets) > 1
}

func (b *Backend) expose(i int, name string) string {
	if b.prefixed() {
		return b.targets[i].Name + Separator + name
	}
	return name
}

// resolveByPrefix finds the target of a prefixed name: the longest target
// name that prefixes it (target names may themselves contain the
// separator).
func (b *Backend) resolveByPrefix(name string) (int, string, bool) {
	return b.splitPrefix(name, Separator)
}

// splitPrefix finds the target whose name and sep prefix s, the longest
// such name, and returns it with the rest of s.
func (b *Backend) splitPrefix(s, sep string) (int, string, bool) {
	best, orig := -1, ""
	for i, t := range b.targets {
		p := t.Name + sep
		if strings.HasPrefix(s, p) && len(s) > len(p) && (best < 0 || len(t.Name) > len(b.targets[best].Name)) {
			best, orig = i, s[len(p):]
		}
	}
	return best, orig, best >= 0
}

// owner resolves an exposed tool or prompt name to (target, upstream name).
// In never mode the owner comes from the last listing; list refreshes it.
func (b *Backend) owner(ctx context.Context, ss *sdk.ServerSession, kind, name string) (int, string, error) {
	if b.prefixed() {
		if i, orig, ok := b.resolveByPrefix(name); ok {
			return i, orig, nil
		}
		return -1, "", invalidParams("unknown %s %q", kind, name)
	}
	if len(b.targets) == 1 {
		return 0, name, nil
	}
	key := kind + "\x00" + name
	b.mu.Lock()
	i, ok := b.owners[key]
	b.mu.Unlock()
	if !ok {
		var err error
		if kind == "tool" {
			_, err = b.listTools(ctx, ss, nil)
		} else {
			_, err = b.listPrompts(ctx, ss, nil)
		}
		if err != nil {
			return -1, "", err
		}
		b.mu.Lock()
		i, ok = b.owners[key]
		b.mu.Unlock()
	}
	if !ok {
		return -1, "", invalidParams("unknown %s %q", kind, name)
	}
	return i, name, nil
}

// fanout runs fn for every target in parallel and applies failureMode:
// failClosed returns the first target's error; failOpen skips failed
// targets unless all failed. ok[i] says whether target i answered.
func (b *Backend) fanout(ctx context.Context, ss *sdk.ServerSession, fn func(i int, cs *sdk.ClientSession) error) (ok []bool, err error) {
	errs := make([]error, len(b.targets))
	var wg sync.WaitGroup
	for i := range b.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.call(ctx, ss, i, func(cs *sdk.ClientSession) error { return fn(i, cs) })
		}()
	}
	wg.Wait()
	ok = make([]bool, len(b.targets))
	failed := 0
	var first error
	for i, e := range errs {
		ok[i] = e == nil
		if e != nil {
			failed++
			e = fmt.Errorf("mcp target %q: %w", b.targets[i].Name, e)
			if first == nil {
				first = e
			}
			if b.opts.FailOpen {
				b.log.Warn("mcp target skipped (failureMode failOpen)", "target", b.targets[i].Name, "error", e)
			}
		}
	}
	if failed > 0 && (!b.opts.FailOpen || failed == len(b.targets)) {
		return ok, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: first.Error()}
	}
	return ok, nil
}

// claim records ownership of names in never mode: the first target in
// config order that lists a name owns it.
func (b *Backend) claim(kind string, names [][]string, ok []bool) map[string]int {
	own := map[string]int{}
	for i, ns := range names {
		for _, n := range ns {
			if prev, dup := own[n]; dup {
				if prev != i {
					b.log.Warn("mcp name served by two targets; the first in config order owns it (prefixMode never)",
						"kind", kind, "name", n, "owner", b.targets[prev].Name, "hidden", b.targets[i].Name)
				}
				continue
			}
			own[n] = i
		}
	}
	b.mu.Lock()
	for k, i := range b.owners {
		if strings.HasPrefix(k, kind+"\x00") && ok[i] {
			delete(b.owners, k)
		}
	}
	for n, i := range own {
		b.owners[kind+"\x00"+n] = i
	}
	b.mu.Unlock()
	return own
}

func (b *Backend) listTools(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars) (*sdk.ListToolsResult, error) {
	per, ok, err := collect(ctx, b, ss, nil, func(cs *sdk.ClientSession) iter.Seq2[*sdk.Tool, error] { return cs.Tools(ctx, nil) })
	if err != nil {
		return nil, err
	}
	b.listings.record(b, per, ok)
	tools := merge(b, "tool", "tools/list", per, ok, vars,
		func(t *sdk.Tool) string { return t.Name },
		func(t *sdk.Tool, name string) *sdk.Tool { c := *t; c.Name = name; return &c })
	return &sdk.ListToolsResult{Tools: tools}, nil
}

func (b *Backend) listPrompts(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars) (*sdk.ListPromptsResult, error) {
	hasPrompts := func(cs *sdk.ClientSession) bool {
		ir := cs.InitializeResult()
		return ir == nil || ir.Capabilities == nil || ir.Capabilities.Prompts != nil
	}
	prompts, err := listNamed(ctx, b, ss, vars, "prompt", "prompts/list", hasPrompts,
		func(cs *sdk.ClientSession) iter.Seq2[*sdk.Prompt, error] { return cs.Prompts(ctx, nil) },
		func(p *sdk.Prompt) string { return p.Name },
		func(p *sdk.Prompt, name string) *sdk.Prompt { c := *p; c.Name = name; return &c })
	if err != nil {
		return nil, err
	}
	return &sdk.ListPromptsResult{Prompts: prompts}, nil
}

// listNamed lists the items whose names the gateway federates (tools,
// prompts) from every target (collect) and merges them (merge).
func listNamed[T any](ctx context.Context, b *Backend, ss *sdk.ServerSession, vars cel.Vars, kind, method string,
	has func(*sdk.ClientSession) bool, list func(*sdk.ClientSession) iter.Seq2[T, error],
	name func(T) string, rename func(T, string) T) ([]T, error) {
	per, ok, err := collect(ctx, b, ss, has, list)
	if err != nil {
		return nil, err
	}
	return merge(b, kind, method, per, ok, vars, name, rename), nil
}

// merge federates the items (tools or prompts) each target listed: where
// names are not prefixed, the first target to list a name owns it; items
// the caller may not see are left out (mcpAuthorization); the rest appear
// under their exposed names.
func merge[T any](b *Backend, kind, method string, per [][]T, ok []bool, vars cel.Vars, name func(T) string, rename func(T, string) T) []T {
	var own map[string]int
	if !b.prefixed() && len(b.targets) > 1 {
		names := make([][]string, len(per))
		for i, items := range per {
			for _, it := range items {
				names[i] = append(names[i], name(it))
			}
		}
		own = b.claim(kind, names, ok)
	}
	out := []T{}
	for i, items := range per {
		for _, it := range items {
			n := name(it)
			if own != nil && own[n] != i {
				continue
			}
			if vars != nil {
				if v := b.decide(vars, method, kind, map[string]any{"name": n, "target": b.targets[i].Name}); !v.Allowed {
					continue
				}
			}
			out = append(out, rename(it, b.expose(i, n)))
		}
	}
	return out
}

// collect lists one kind of item from every target at once; has, if set,
// skips targets whose capabilities say they have none. ok is fanout's.
func collect[T any](ctx context.Context, b *Backend, ss *sdk.ServerSession, has func(*sdk.ClientSession) bool,
	list func(*sdk.ClientSession) iter.Seq2[T, error]) (per [][]T, ok []bool, err error) {
	per = make([][]T, len(b.targets))
	ok, err = b.fanout(ctx, ss, func(i int, cs *sdk.ClientSession) error {
		if has != nil && !has(cs) {
			return nil
		}
		for it, err := range list(cs) {
			if err != nil {
				return err
			}
			per[i] = append(per[i], it)
		}
		return nil
	})
	return per, ok, err
}

func hasResources(cs *sdk.ClientSession) bool {
	ir := cs.InitializeResult()
	return ir == nil || ir.Capabilities == nil || ir.Capabilities.Resources != nil
}

func (b *Backend) listResources(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars) (*sdk.ListResourcesResult, error) {
	per, _, err := collect(ctx, b, ss, hasResources, func(cs *sdk.ClientSession) iter.Seq2[*sdk.Resource, error] { return cs.Resources(ctx, nil) })
	if err != nil {
		return nil, err
	}
	res := &sdk.ListResourcesResult{}
	b.mu.Lock()
	for i, rs := range per {
		for _, r := range rs {
			if _, dup := b.resOwner[r.URI]; !dup || b.resOwner[r.URI] >= i {
				b.resOwner[r.URI] = i
			}
		}
	}
	b.mu.Unlock()
	res.Resources = visibleResources(b, "resources/list", per, vars, func(r *sdk.Resource) (string, string) { return r.Name, r.URI },
		func(i int, r *sdk.Resource) *sdk.Resource { c := *r; c.URI = b.exposeURI(i, r.URI); return &c })
	return res, nil
}

func (b *Backend) listTemplates(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars) (*sdk.ListResourceTemplatesResult, error) {
	per, _, err := collect(ctx, b, ss, hasResources, func(cs *sdk.ClientSession) iter.Seq2[*sdk.ResourceTemplate, error] {
		return cs.ResourceTemplates(ctx, nil)
	})
	if err != nil {
		return nil, err
	}
	return &sdk.ListResourceTemplatesResult{ResourceTemplates: visibleResources(b, "resources/templates/list", per, vars,
		func(r *sdk.ResourceTemplate) (string, string) { return r.Name, r.URITemplate },
		func(i int, r *sdk.ResourceTemplate) *sdk.ResourceTemplate {
			c := *r
			c.URITemplate = b.exposeURI(i, r.URITemplate)
			return &c
		})}, nil
}

// visibleResources are the resources (or templates) every target listed,
// in target order, less those mcpAuthorization hides from the caller
// (vars nil: no caller, keep all); attrs gives an item's name and URI,
// expose renames it for the client.
func visibleResources[T any](b *Backend, method string, per [][]T, vars cel.Vars, attrs func(T) (name, uri string), expose func(int, T) T) []T {
	out := []T{}
	for i, items := range per {
		for _, it := range items {
			if vars != nil {
				name, uri := attrs(it)
				if v := b.decide(vars, method, "resource", map[string]any{"name": name, "uri": uri, "target": b.targets[i].Name}); !v.Allowed {
					continue
				}
			}
			out = append(out, expose(i, it))
		}
	}
	return out
}

// URISeparator joins a target name and a resource URI where names are
// prefixed: "everything+test://static-text" (a valid URI whose scheme is
// "everything+test").
const URISeparator = "+"

// exposeURI is the URI clients see for target i's resource uri.
func (b *Backend) exposeURI(i int, uri string) string {
	if b.prefixed() && uri != "" {
		return b.targets[i].Name + URISeparator + uri
	}
	return uri
}

// resolveURI finds the target of a prefixed URI (the longest target name
// that prefixes it) and the target's own URI.
func (b *Backend) resolveURI(uri string) (int, string, bool) {
	return b.splitPrefix(uri, URISeparator)
}

// resourceOwner finds the target serving a URI and the target's own URI:
// by prefix where URIs are prefixed; otherwise from the last listing, or
// (templated and unlisted resources) the only target, or by listing.
func (b *Backend) resourceOwner(ctx context.Context, ss *sdk.ServerSession, uri string) (int, string, bool) {
	if b.prefixed() {
		return b.resolveURI(uri)
	}
	if len(b.targets) == 1 {
		return 0, uri, true
	}
	b.mu.Lock()
	i, ok := b.resOwner[uri]
	b.mu.Unlock()
	if ok {
		return i, uri, true
	}
	if _, err := b.listResources(ctx, ss, nil); err == nil {
		b.mu.Lock()
		i, ok = b.resOwner[uri]
		b.mu.Unlock()
	}
	return i, uri, ok
}

func serverSession(req sdk.Request) *sdk.ServerSession {
	ss, _ := req.GetSession().(*sdk.ServerSession)
	return ss
}

// handle answers the federated methods; everything else (ping, unknown
// methods → "method not found") is the SDK's.
func (b *Backend) handle(ctx context.Context, method string, req sdk.Request, next sdk.MethodHandler) (sdk.Result, error) {
	ss := serverSession(req)
	switch method {
	case "initialize":
		res, err := next(ctx, method, req)
		if err != nil {
			return res, err
		}
		b.metrics.request(method, "", "")
		// Start every target now, so failClosed fails the session
		// at its start rather than on its first call.
		if _, err := b.fanout(ctx, ss, func(int, *sdk.ClientSession) error { return nil }); err != nil {
			return nil, err
		}
		return res, nil
	case "tools/list":
		b.metrics.request(method, "", "")
		return b.listTools(ctx, ss, b.varsFor(req))
	case "prompts/list":
		b.metrics.request(method, "", "")
		return b.listPrompts(ctx, ss, b.varsFor(req))
	case "resources/list":
		b.metrics.request(method, "", "")
		return b.listResources(ctx, ss, b.varsFor(req))
	case "resources/templates/list":
		b.metrics.request(method, "", "")
		return b.listTemplates(ctx, ss, b.varsFor(req))
	case "tools/call":
		r, _ := req.(*sdk.CallToolRequest)
		if r == nil || r.Params == nil {
			return nil, invalidParams("tools/call needs params")
		}
		return b.callTool(ctx, ss, req, r.Params)
	case "prompts/get":
		r, _ := req.(*sdk.GetPromptRequest)
		if r == nil || r.Params == nil {
			return nil, invalidParams("prompts/get needs params")
		}
		return b.getPrompt(ctx, ss, req, r.Params)
	case "resources/read":
		r, _ := req.(*sdk.ReadResourceRequest)
		if r == nil || r.Params == nil {
			return nil, invalidParams("resources/read needs params")
		}
		return b.readResource(ctx, ss, req, r.Params)
	case "resources/subscribe", "resources/unsubscribe":
		b.metrics.request(method, "", "")
		var uri string
		switch r := req.(type) {
		case *sdk.SubscribeRequest:
			if r.Params != nil {
				uri = r.Params.URI
			}
		case *sdk.UnsubscribeRequest:
			if r.Params != nil {
				uri = r.Params.URI
			}
		}
		if uri == "" {
			return nil, invalidParams("%s needs a uri", method)
		}
		if err := b.subscribe(ctx, ss, req, uri, method == "resources/subscribe"); err != nil {
			return nil, err
		}
		// The SDK answers (its handlers are no-ops: targets send updates).
		return next(ctx, method, req)
	case "completion/complete":
		r, _ := req.(*sdk.CompleteRequest)
		if r == nil || r.Params == nil || r.Params.Ref == nil {
			return nil, invalidParams("completion/complete needs params with a ref")
		}
		b.metrics.request(method, "", "")
		return b.complete(ctx, ss, req, r.Params)
	case "logging/setLevel":
		b.metrics.request(method, "", "")
		res, err := next(ctx, method, req)
		if err != nil {
			return res, err
		}
		p, _ := req.GetParams().(*sdk.SetLoggingLevelParams)
		if p == nil || ss == nil {
			return res, nil
		}
		ds := b.front.session(ss)
		ds.mu.Lock()
		ds.level = p.Level
		ds.mu.Unlock()
		if _, err := b.fanout(ctx, ss, func(_ int, cs *sdk.ClientSession) error {
			if !hasLogging(cs) {
				return nil
			}
			return cs.SetLoggingLevel(ctx, p)
		}); err != nil {
			return nil, err
		}
		return res, nil
	case "notifications/roots/list_changed":
		res, err := next(ctx, method, req)
		b.forEachUpstream(ss, func(cs *sdk.ClientSession) {
			notifyTarget(context.WithoutCancel(ctx), cs, method, &sdk.RootsListChangedParams{})
		})
		return res, err
	}
	b.metrics.request(method, "", "")
	return next(ctx, method, req)
}

// forEachUpstream runs fn on every connected target session ss uses.
func (b *Backend) forEachUpstream(ss *sdk.ServerSession, fn func(*sdk.ClientSession)) {
	b.mu.Lock()
	var ups []*upstream
	for _, u := range b.shared {
		ups = append(ups, u)
	}
	if s := b.sessions[ss]; s != nil {
		for _, u := range s.ups {
			ups = append(ups, u)
		}
	}
	b.mu.Unlock()
	for _, u := range ups {
		u.mu.Lock()
		cs := u.cs
		u.mu.Unlock()
		if cs != nil {
			fn(cs)
		}
	}
}

func hasLogging(cs *sdk.ClientSession) bool {
	ir := cs.InitializeResult()
	return ir == nil || ir.Capabilities == nil || ir.Capabilities.Logging != nil
}

// subscribe forwards resources/subscribe or unsubscribe to the target
// owning the URI. A shared target is unsubscribed only when no session
// is still subscribed.
func (b *Backend) subscribe(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, uri string, on bool) error {
	method := "resources/unsubscribe"
	if on {
		method = "resources/subscribe"
	}
	i, orig, ok := b.resourceOwner(ctx, ss, uri)
	if !ok {
		return &jsonrpc.Error{Code: sdk.CodeResourceNotFound, Message: fmt.Sprintf("resource %q not found on any target", uri)}
	}
	target := b.targets[i].Name
	vars := b.varsFor(req)
	if v := b.decide(vars, method, "resource", map[string]any{"name": orig, "uri": orig, "target": target}); !v.Allowed {
		b.metrics.denial("resource", target)
		return deniedError("resource", orig, target, v)
	}
	ds := b.front.session(ss)
	ds.mu.Lock()
	was := ds.subs[uri]
	if on {
		ds.subs[uri] = true
	} else {
		delete(ds.subs, uri)
	}
	ds.mu.Unlock()
	_, shared := b.shared[target]
	forward := true
	if shared {
		key := target + "\x00" + orig
		b.mu.Lock()
		switch {
		case on && !was:
			b.subs[key]++
		case !on && was:
			b.subs[key]--
			forward = b.subs[key] <= 0
			if forward {
				delete(b.subs, key)
			}
		}
		b.mu.Unlock()
	}
	var err error
	if forward {
		err = b.call(ctx, ss, i, func(cs *sdk.ClientSession) error {
			if on {
				return cs.Subscribe(ctx, &sdk.SubscribeParams{Meta: metaOf(req), URI: orig})
			}
			return cs.Unsubscribe(ctx, &sdk.UnsubscribeParams{Meta: metaOf(req), URI: orig})
		})
	}
	b.access("mcp", append([]any{"method", method, "target", target, "uri", orig, "ok", err == nil}, callerAttrs(vars)...)...)
	if err != nil {
		return upstreamError(target, err)
	}
	return nil
}

func metaOf(req sdk.Request) sdk.Meta {
	if p := req.GetParams(); p != nil {
		return p.GetMeta()
	}
	return nil
}

// complete forwards completion/complete to the target owning the prompt
// or resource template it refers to, under the target's own name.
func (b *Backend) complete(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, p *sdk.CompleteParams) (sdk.Result, error) {
	c := *p
	ref := *p.Ref
	c.Ref = &ref
	var i int
	var kind, name string
	switch ref.Type {
	case "ref/prompt":
		var err error
		if i, ref.Name, err = b.owner(ctx, ss, "prompt", p.Ref.Name); err != nil {
			return nil, err
		}
		kind, name = "prompt", ref.Name
	case "ref/resource":
		var ok bool
		if i, ref.URI, ok = b.templateOwner(ctx, ss, p.Ref.URI); !ok {
			return nil, &jsonrpc.Error{Code: sdk.CodeResourceNotFound, Message: fmt.Sprintf("resource template %q not found on any target", p.Ref.URI)}
		}
		kind, name = "resource", ref.URI
	default:
		return nil, invalidParams("completion/complete: unknown ref type %q", ref.Type)
	}
	target := b.targets[i].Name
	vars := b.varsFor(req)
	item := map[string]any{"name": name, "target": target}
	if kind == "resource" {
		item["uri"] = name
	}
	if v := b.decide(vars, "completion/complete", kind, item); !v.Allowed {
		b.metrics.denial(kind, target)
		return nil, deniedError(kind, name, target, v)
	}
	var res *sdk.CompleteResult
	meta, done := b.withProgress(ctx, ss, p.Meta)
	defer done(true)
	c.Meta = meta
	err := b.call(ctx, ss, i, func(cs *sdk.ClientSession) error {
		var err error
		res, err = cs.Complete(ctx, &c)
		return err
	})
	if err != nil {
		return nil, upstreamError(target, err)
	}
	return res, nil
}

// templateOwner finds the target of a resource template URI: by prefix,
// or with one target that one, or the first target listing it.
func (b *Backend) templateOwner(ctx context.Context, ss *sdk.ServerSession, uri string) (int, string, bool) {
	if b.prefixed() {
		return b.resolveURI(uri)
	}
	if len(b.targets) == 1 {
		return 0, uri, true
	}
	per, _, err := collect(ctx, b, ss, hasResources, func(cs *sdk.ClientSession) iter.Seq2[*sdk.ResourceTemplate, error] {
		return cs.ResourceTemplates(ctx, nil)
	})
	if err == nil {
		for i, ts := range per {
			for _, t := range ts {
				if t.URITemplate == uri {
					return i, uri, true
				}
			}
		}
	}
	return b.resourceOwner(ctx, ss, uri)
}

func (b *Backend) callTool(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, p *sdk.CallToolParamsRaw) (sdk.Result, error) {
	vars := b.varsFor(req)
	return b.callToolAs(ctx, ss, vars, callerAttrs(vars), p, nil)
}

// callToolAs is tools/call for the caller whose variables are vars (the
// SDK's request or the fast path's; nil if no mcpAuthorization rule is
// to read them) and whose access log attributes are who. If answer is set, it is given the
// outcome before the access log line is written (the fast path writes
// its response there, so that the log's write is not in the client's
// wait); callToolAs returns the same outcome either way.
func (b *Backend) callToolAs(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars, who []any, p *sdk.CallToolParamsRaw, answer func(sdk.Result, error)) (sdk.Result, error) {
	res, attrs, err := b.callToolLogged(ctx, ss, vars, who, p)
	if answer != nil {
		answer(res, err)
	}
	b.access("mcp", attrs...)
	return res, err
}

// callToolLogged is callToolAs without the access log: it returns the
// attributes of the call's line.
func (b *Backend) callToolLogged(ctx context.Context, ss *sdk.ServerSession, vars cel.Vars, who []any, p *sdk.CallToolParamsRaw) (sdk.Result, []any, error) {
	start := time.Now()
	i, orig, err := b.owner(ctx, ss, "tool", p.Name)
	if err != nil {
		b.metrics.request("tools/call", "", "")
		return nil, []any{"method", "tools/call", "tool", p.Name, "error", err.Error()}, err
	}
	target := b.targets[i].Name
	b.metrics.request("tools/call", target, orig)
	// (Without rules, the item is not built: every call of every session
	// comes here.)
	if b.opts.Authorization != nil {
		if v := b.decide(vars, "tools/call", "tool", map[string]any{"name": orig, "target": target}); !v.Allowed {
			b.metrics.denial("tool", target)
			return nil, append([]any{"method", "tools/call", "target", target, "tool", orig, "verdict", "denied", "reason", v.Reason, "rule", v.Rule}, who...), deniedError("tool", orig, target, v)
		}
	}
	var res *sdk.CallToolResult
	var raw *rawResult
	meta, done := b.withProgress(ctx, ss, p.Meta)
	defer func() { done(raw == nil) }()
	params := &sdk.CallToolParams{Meta: meta, Name: orig, Arguments: rawArgs(p.Arguments)}
	err = b.callOn(ctx, ss, i, func(u *upstream, cs *sdk.ClientSession) error {
		var err error
		if c := u.rawConn(cs); c != nil {
			raw, err = c.callTool(ctx, params, usesSessionlessProtocol(p.Meta))
			return err
		}
		res, err = cs.CallTool(ctx, params)
		return err
	})
	d := time.Since(start)
	b.metrics.toolCall(target, orig, d)
	attrs := append([]any{"method", "tools/call", "target", target, "tool", orig, "duration_ms", strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)}, who...)
	if err != nil {
		return nil, append(attrs, "error", err.Error()), upstreamError(target, err)
	}
	if raw != nil {
		if raw.typed != nil {
			res = raw.typed
		} else {
			if raw.isError {
				attrs = append(attrs, "tool_error", true)
			}
			return raw, attrs, nil
		}
	}
	if res.IsError {
		attrs = append(attrs, "tool_error", true)
	}
	return res, attrs, nil
}

func (b *Backend) getPrompt(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, p *sdk.GetPromptParams) (sdk.Result, error) {
	i, orig, err := b.owner(ctx, ss, "prompt", p.Name)
	if err != nil {
		b.metrics.request("prompts/get", "", "")
		return nil, err
	}
	target := b.targets[i].Name
	b.metrics.request("prompts/get", target, "")
	vars := b.varsFor(req)
	if v := b.decide(vars, "prompts/get", "prompt", map[string]any{"name": orig, "target": target}); !v.Allowed {
		b.metrics.denial("prompt", target)
		b.access("mcp", append([]any{"method", "prompts/get", "target", target, "prompt", orig, "verdict", "denied", "reason", v.Reason}, callerAttrs(vars)...)...)
		return nil, deniedError("prompt", orig, target, v)
	}
	var res *sdk.GetPromptResult
	meta, done := b.withProgress(ctx, ss, p.Meta)
	defer done(true)
	err = b.call(ctx, ss, i, func(cs *sdk.ClientSession) error {
		c := *p
		c.Name = orig
		c.Meta = meta
		var err error
		res, err = cs.GetPrompt(ctx, &c)
		return err
	})
	b.access("mcp", append([]any{"method", "prompts/get", "target", target, "prompt", orig, "ok", err == nil}, callerAttrs(vars)...)...)
	if err != nil {
		return nil, upstreamError(target, err)
	}
	return res, nil
}

func (b *Backend) readResource(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, p *sdk.ReadResourceParams) (sdk.Result, error) {
	i, orig, ok := b.resourceOwner(ctx, ss, p.URI)
	if !ok && !b.prefixed() {
		// A templated resource nobody listed: the first target that can
		// read it answers.
		for j := range b.targets {
			if res, err := b.readFrom(ctx, ss, req, j, p.URI, p); err == nil {
				return res, nil
			}
		}
	}
	if !ok {
		b.metrics.request("resources/read", "", "")
		return nil, &jsonrpc.Error{Code: sdk.CodeResourceNotFound, Message: fmt.Sprintf("resource %q not found on any target", p.URI)}
	}
	return b.readFrom(ctx, ss, req, i, orig, p)
}

func (b *Backend) readFrom(ctx context.Context, ss *sdk.ServerSession, req sdk.Request, i int, orig string, p *sdk.ReadResourceParams) (sdk.Result, error) {
	target := b.targets[i].Name
	b.metrics.request("resources/read", target, "")
	vars := b.varsFor(req)
	if v := b.decide(vars, "resources/read", "resource", map[string]any{"name": orig, "uri": orig, "target": target}); !v.Allowed {
		b.metrics.denial("resource", target)
		b.access("mcp", append([]any{"method", "resources/read", "target", target, "uri", orig, "verdict", "denied", "reason", v.Reason}, callerAttrs(vars)...)...)
		return nil, deniedError("resource", orig, target, v)
	}
	c := *p
	c.URI = orig
	meta, done := b.withProgress(ctx, ss, p.Meta)
	defer done(true)
	c.Meta = meta
	var res *sdk.ReadResourceResult
	err := b.call(ctx, ss, i, func(cs *sdk.ClientSession) error {
		var err error
		res, err = cs.ReadResource(ctx, &c)
		return err
	})
	b.access("mcp", append([]any{"method", "resources/read", "target", target, "uri", orig, "ok", err == nil}, callerAttrs(vars)...)...)
	if err != nil {
		return nil, upstreamError(target, err)
	}
	if b.prefixed() {
		out := *res
		out.Contents = make([]*sdk.ResourceContents, len(res.Contents))
		for k, rc := range res.Contents {
			if rc != nil {
				x := *rc
				x.URI = b.exposeURI(i, rc.URI)
				rc = &x
			}
			out.Contents[k] = rc
		}
		res = &out
	}
	return res, nil
}

// upstreamError passes a target's JSON-RPC error through unchanged and
// wraps anything else (a dead connection) as an internal error naming
// the target.
func upstreamError(target string, err error) error {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("mcp target %q: %v", target, err)}
}

func callerAttrs(vars cel.Vars) []any {
	var out []any
	if src, ok := vars["source"].(map[string]any); ok {
		if a, ok := src["address"]; ok {
			out = append(out, "src", a)
		}
		if ts, ok := src["tailscale"].(map[string]any); ok {
			out = append(out, "tailscale.node", ts["node"])
		}
	}
	if j, ok := vars["jwt"].(map[string]any); ok {
		if sub, ok := j["sub"]; ok {
			out = append(out, "jwt.sub", sub)
		}
	}
	return out
}

// resourceOwnerKnown resolves a URI without asking any target: by prefix,
// the only target, or the last listing.
func (b *Backend) resourceOwnerKnown(uri string) (int, string, bool) {
	if b.prefixed() {
		return b.resolveURI(uri)
	}
	if len(b.targets) == 1 {
		return 0, uri, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.resOwner[uri]
	return i, uri, ok
}
