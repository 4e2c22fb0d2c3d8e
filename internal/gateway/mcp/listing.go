package mcp

import (
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TargetTools is what the federation last saw of one target's tools:
// the answer to the latest tools/list it sent that target on behalf of
// a client, whichever session that was.
type TargetTools struct {
	Target Target
	// ListedAt is when the target last answered a tools/list; zero if
	// it never has (no client has listed tools since the config loaded).
	ListedAt time.Time
	// Tools are the target's tools, in its order, as the federation
	// exposes them; mcpAuthorization is not applied (it depends on the
	// caller).
	Tools []ListedTool
}

// ListedTool is one tool of a target.
type ListedTool struct {
	// Name is the target's own name for it; Exposed is the name clients
	// call it by (prefixMode).
	Name, Exposed string
	Description   string
}

// toolListings keeps each target's latest tools/list answer, so the
// gateway can show the tools without calling targets itself.
type toolListings struct {
	mu    sync.Mutex
	at    []time.Time
	tools [][]ListedTool
}

// record keeps the listings of the targets that answered (ok[i]); a
// target that failed keeps its previous listing.
func (l *toolListings) record(b *Backend, per [][]*sdk.Tool, ok []bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = make([]time.Time, len(b.targets))
		l.tools = make([][]ListedTool, len(b.targets))
	}
	for i, tools := range per {
		if !ok[i] {
			continue
		}
		ts := make([]ListedTool, len(tools))
		for j, t := range tools {
			ts[j] = ListedTool{Name: t.Name, Exposed: b.expose(i, t.Name), Description: t.Description}
		}
		l.at[i], l.tools[i] = now, ts
	}
}

// ToolListings returns every target of the backend, in config order,
// with the tools it listed last. It never calls a target: a target no
// client has listed tools from yet has a zero ListedAt.
func (b *Backend) ToolListings() []TargetTools {
	l := &b.listings
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]TargetTools, len(b.targets))
	for i, t := range b.targets {
		out[i].Target = t
		if l.at != nil {
			out[i].ListedAt, out[i].Tools = l.at[i], l.tools[i]
		}
	}
	return out
}
