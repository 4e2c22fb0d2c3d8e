package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Loading a config is bounded, so that a hostile or runaway file (a YAML
// bomb, a generator gone wrong) is refused in milliseconds instead of
// taking the gateway's memory. Hot reload uses the same path, so a bad
// file there leaves the running config in place.
//
// Three limits, each checked before the file is decoded into structs:
//
//   - size: the file is read through a limit and never whole when it is
//     larger (a regular file larger than the limit is not read at all);
//   - alias expansion: YAML anchors and aliases let a 1 KiB file stand for
//     billions of nodes ("billion laughs"). yaml.v3 guards its own decoder
//     with an alias ratio, but a config is first parsed into a yaml.Node
//     tree (for line numbers), where nothing is expanded, and the
//     expansion happens in our decoder. So we count the nodes that aliases
//     add, walking the tree as the decoder will, and stop at the limit;
//   - nesting depth: mappings and sequences inside each other, counted
//     through aliases. yaml.v3's parser stops at 10,000; a real config
//     nests about 12 deep.

// Default limits. A large real config (hundreds of routes) is well under
// 1 MiB and uses aliases, if at all, for a few shared policy blocks.
const (
	DefaultMaxBytes      = 4 << 20
	DefaultMaxDepth      = 64
	DefaultMaxAliasNodes = 10_000
)

// Limits bound one load. Zero fields take the defaults.
type Limits struct {
	// MaxBytes is the largest file accepted.
	MaxBytes int64
	// MaxDepth is how deeply mappings and sequences may nest.
	MaxDepth int
	// MaxAliasNodes is how many nodes alias expansion may add in total
	// (an alias of a 10-node mapping used 3 times adds 30).
	MaxAliasNodes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxAliasNodes <= 0 {
		l.MaxAliasNodes = DefaultMaxAliasNodes
	}
	return l
}

// ErrLimit matches every LimitError (errors.Is).
var ErrLimit = errors.New("config limit exceeded")

// LimitError is a config refused because it hit a limit: which one, its
// value, and where in the file when that is known.
type LimitError struct {
	File   string
	Limit  string // "size", "alias expansion" or "nesting depth"
	Max    int64
	Line   int
	Column int
	Path   string // YAML path of the node that hit the limit
	Msg    string // what was found
}

func (e *LimitError) Error() string {
	return where(e.File, e.Line, e.Column, e.Path) +
		fmt.Sprintf("config exceeds the %s limit (%d): %s", e.Limit, e.Max, e.Msg)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// ReadFile reads a config file of at most maxBytes (0: the default). A
// larger file is refused without being read whole.
func ReadFile(path string, maxBytes int64) ([]byte, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tooBig := func(what string) error {
		return &LimitError{File: path, Limit: "size", Max: maxBytes, Msg: what + "; raise the limit (tailgate gateway --max-config-bytes) if the file is meant to be this large"}
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > maxBytes {
		return nil, tooBig(fmt.Sprintf("the file is %d bytes", st.Size()))
	}
	// Stat can be wrong (a file still growing, a FIFO, /proc): read one
	// byte past the limit to know.
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxBytes {
		return nil, tooBig(fmt.Sprintf("the file is more than %d bytes", maxBytes))
	}
	return data, nil
}

// checkLimits walks the parsed tree the way the decoder will (following
// aliases) and stops at the first limit crossed. Its own cost is bounded
// by the tree's size plus lim.MaxAliasNodes.
func checkLimits(name string, root *yaml.Node, lim Limits) error {
	w := &limitWalker{file: name, lim: lim, open: map[*yaml.Node]bool{}}
	w.walk(root, 0, nil)
	if w.err != nil {
		return w.err
	}
	return nil
}

type limitWalker struct {
	file       string
	lim        Limits
	aliasNodes int
	// open are the anchored nodes being walked: an alias to one of them
	// is a cycle (yaml.v3 parses `&a [*a]` into one).
	open map[*yaml.Node]bool
	path []pathStep
	err  *LimitError
}

// pathStep is one step of the YAML path, kept cheap because the path
// is only spelled out when a limit is hit.
type pathStep struct {
	key   string
	index int // -1 for a mapping key
}

// pathString spells the path out, eliding the middle of a long one (a
// nesting bomb's path is as deep as the bomb).
func (w *limitWalker) pathString() string {
	var b strings.Builder
	const head, tail = 8, 4
	for i, s := range w.path {
		if len(w.path) > head+tail && i >= head && i < len(w.path)-tail {
			if i == head {
				fmt.Fprintf(&b, "...(%d more)...", len(w.path)-head-tail)
			}
			continue
		}
		if s.index >= 0 {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

func (w *limitWalker) fail(n *yaml.Node, limit string, max int, msg string) {
	w.err = &LimitError{File: w.file, Limit: limit, Max: int64(max), Line: n.Line, Column: n.Column, Path: w.pathString(), Msg: msg}
}

// walk visits n at depth (its parent's nesting). alias is the alias node
// whose expansion n is part of, or nil; nodes under an alias count
// against MaxAliasNodes, and an error there names the alias's line.
func (w *limitWalker) walk(n *yaml.Node, depth int, alias *yaml.Node) {
	if w.err != nil || n == nil {
		return
	}
	if alias != nil {
		w.aliasNodes++
		if w.aliasNodes > w.lim.MaxAliasNodes {
			w.fail(alias, "alias expansion", w.lim.MaxAliasNodes, fmt.Sprintf("aliases expand to more than %d nodes (at alias *%s)", w.lim.MaxAliasNodes, alias.Value))
			return
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, depth, alias)
		}
		return
	case yaml.AliasNode:
		if n.Alias == nil {
			return
		}
		if w.open[n.Alias] {
			w.fail(n, "alias expansion", w.lim.MaxAliasNodes, fmt.Sprintf("alias *%s is inside its own anchor, so it never ends", n.Value))
			return
		}
		// The alias's own line is the one to point at: it is where the
		// copy is made.
		if alias == nil {
			alias = n
		}
		w.walk(n.Alias, depth, alias)
		return
	case yaml.MappingNode, yaml.SequenceNode:
		depth++
		if depth > w.lim.MaxDepth {
			at := n
			msg := fmt.Sprintf("mappings and lists nest more than %d deep", w.lim.MaxDepth)
			if alias != nil {
				msg += fmt.Sprintf(" (through alias *%s, line %d)", alias.Value, alias.Line)
			}
			w.fail(at, "nesting depth", w.lim.MaxDepth, msg)
			return
		}
	default:
		return
	}
	if n.Anchor != "" {
		w.open[n] = true
		defer delete(w.open, n)
	}
	if n.Kind == yaml.SequenceNode {
		for i, c := range n.Content {
			w.path = append(w.path, pathStep{index: i})
			w.walk(c, depth, alias)
			w.path = w.path[:len(w.path)-1]
			if w.err != nil {
				return
			}
		}
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		w.walk(k, depth, alias) // keys can be aliases, and count too
		w.path = append(w.path, pathStep{key: k.Value, index: -1})
		w.walk(n.Content[i+1], depth, alias)
		w.path = w.path[:len(w.path)-1]
		if w.err != nil {
			return
		}
	}
}
