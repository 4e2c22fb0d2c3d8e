package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/internal/expiring"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// TailscaleIdentity is who is calling, as the tailnet's control plane
// says (WhoIs on the peer address). Rules see it as source.tailscale.
type TailscaleIdentity struct {
	// Node is the caller's machine name (first label of its MagicDNS name).
	Node string
	// User is the owner's login name; "tagged-devices" for tagged nodes.
	User string
	// Tags are the node's ACL tags, e.g. ["tag:ci"].
	Tags []string
	// Caps are the application capabilities the tailnet policy grants the
	// caller on this gateway (WhoIs CapMap: grants whose dst is the
	// gateway, with an "app" block), by capability name. Each value is
	// the list of JSON objects the matching grants carry, decoded:
	// `"app": {"example.com/cap/mcp": [{"tools": ["echo"]}]}` is
	// Caps["example.com/cap/mcp"] == []any{map[string]any{"tools": []any{"echo"}}}.
	// A capability without values is an empty list. Never nil.
	Caps map[string][]any
}

func (t *TailscaleIdentity) vars() map[string]any {
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	caps := t.Caps
	if caps == nil {
		caps = map[string][]any{}
	}
	return map[string]any{"node": t.Node, "user": t.User, "tags": tags, "caps": caps}
}

// capsOf decodes WhoIs's CapMap. A value that is not JSON (control never
// sends one) is left out of its list rather than failing the caller.
func capsOf(cm tailcfg.PeerCapMap) map[string][]any {
	caps := make(map[string][]any, len(cm))
	for name, raws := range cm {
		vals := make([]any, 0, len(raws))
		for _, raw := range raws {
			var v any
			if err := json.Unmarshal([]byte(raw), &v); err == nil {
				vals = append(vals, v)
			}
		}
		caps[string(name)] = vals
	}
	return caps
}

// tailnetNode is the gateway's embedded tsnet node and its WhoIs cache.
type tailnetNode struct {
	cfg  config.Tailnet
	node *tailnet.Node

	// identities are callers' identities by tailnet address, each kept for
	// whoisTTL.
	identities *expiring.Cache[netip.Addr, *TailscaleIdentity]
}

// whoisCacheSize bounds the WhoIs cache: one entry per peer seen within
// whoisTTL.
const whoisCacheSize = 4096

// whoisTTL bounds how long a peer's identity is reused. Tags, owners and
// grants change rarely; a minute keeps WhoIs off the per-connection path
// without trusting a stale answer for long. A variable for tests.
var whoisTTL = time.Minute

func readAuthKey(ref *config.SecretRef) (string, error) {
	if ref == nil {
		return "", nil
	}
	if ref.Env != "" {
		v, ok := os.LookupEnv(ref.Env)
		if !ok {
			return "", fmt.Errorf("tailnet auth key: environment variable %s is not set", ref.Env)
		}
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(ref.File)
	if err != nil {
		return "", fmt.Errorf("tailnet auth key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func startTailnet(ctx context.Context, cfg config.Tailnet, logf func(string, ...any)) (*tailnetNode, error) {
	key, err := readAuthKey(cfg.AuthKey)
	if err != nil {
		return nil, err
	}
	n, err := tailnet.Join(ctx, tailnet.JoinOptions{
		ControlURL: cfg.ControlURL,
		AuthKey:    key,
		Hostname:   cfg.Hostname,
		Tags:       cfg.Tags,
		Persistent: !cfg.Ephemeral,
		Dir:        cfg.StateDir,
		Logf:       logf,
	})
	if err != nil {
		return nil, fmt.Errorf("start tailnet node %s: %w", cfg.Hostname, err)
	}
	return &tailnetNode{cfg: cfg, node: n, identities: expiring.New[netip.Addr, *TailscaleIdentity](whoisCacheSize)}, nil
}

func (t *tailnetNode) listen(port int) (net.Listener, error) {
	return t.node.Server().Listen("tcp", fmt.Sprintf(":%d", port))
}

// whois returns the caller behind addr, from cache when fresh.
func (t *tailnetNode) whois(ctx context.Context, addr netip.AddrPort) (*TailscaleIdentity, error) {
	ip := addr.Addr().Unmap()
	now := time.Now()
	if id, ok := t.identities.Get(ip, now); ok {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := t.node.LocalClient().WhoIs(ctx, addr.String())
	if err != nil {
		return nil, fmt.Errorf("whois %s: %w", ip, err)
	}
	if res.Node == nil {
		return nil, errors.New("whois: no node")
	}
	id := &TailscaleIdentity{Node: strings.SplitN(res.Node.Name, ".", 2)[0], Tags: res.Node.Tags, Caps: capsOf(res.CapMap)}
	if res.UserProfile != nil {
		id.User = res.UserProfile.LoginName
	}
	t.identities.Put(ip, id, now.Add(whoisTTL), now)
	return id, nil
}

func (t *tailnetNode) close() error {
	return t.node.Close()
}
