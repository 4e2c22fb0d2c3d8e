package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// A stdio target is reached through stdioTransport rather than the SDK's
// CommandTransport, for the hot path of a call: the gateway writes a
// tools/call straight to the child's stdin and the goroutine reading its
// stdout hands the answer, as the raw bytes of its result, to the call
// waiting for it, so the answer is neither decoded into SDK types nor
// re-encoded, and passes one goroutine less. Every other message (the
// SDK client's own requests, what the target asks or tells) is the SDK's,
// as with CommandTransport.

// rawIDPrefix marks the ids of the gateway's raw calls; the SDK's own
// requests have numeric ids, so the two never meet.
const rawIDPrefix = "tailgate-raw-"

// maxLineBytes bounds one message from a target (the SDK's default).
const maxLineBytes = sdk.DefaultMaxLineLength

// stdioTransport starts cmd and speaks newline-delimited JSON-RPC on its
// stdin and stdout.
type stdioTransport struct {
	cmd *exec.Cmd
	// progress, if set, is offered every progress notification's params
	// by the reader, before the message after it is read; it reports
	// whether it took the notification (then the SDK never sees it).
	progress func(json.RawMessage) bool
	// seen, if set, counts the notifications the SDK is handed that
	// fromTarget relays (order.go).
	seen *atomic.Int64
	conn *stdioConn // set by Connect
}

func (t *stdioTransport) Connect(context.Context) (sdk.Connection, error) {
	stdout, err := t.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := t.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := t.cmd.Start(); err != nil {
		return nil, err
	}
	t.conn = &stdioConn{cmd: t.cmd, stdin: stdin, progress: t.progress, seen: t.seen, w: bufio.NewWriterSize(stdin, 64<<10),
		r: bufio.NewReaderSize(stdout, 64<<10), pending: map[string]chan rawReply{}, exited: make(chan struct{})}
	return t.conn, nil
}

// rawReply is the answer to a raw call: its result, or its error.
type rawReply struct {
	result json.RawMessage
	err    error
}

// stdioConn is one child process's JSON-RPC connection.
type stdioConn struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	wmu sync.Mutex
	w   *bufio.Writer // stdin; flushed after every message

	r        *bufio.Reader // stdout; read only by Read (the SDK's reader goroutine)
	line     []byte        // a line longer than r's buffer, assembled
	progress func(json.RawMessage) bool
	seen     *atomic.Int64

	mu      sync.Mutex
	pending map[string]chan rawReply // raw calls out, by id
	readErr error                    // set when the connection failed or closed; no raw call waits after it

	seq       atomic.Int64
	closeOnce sync.Once
	closeErr  error
	exited    chan struct{} // closed when the process has been waited for (after Close)
	waitErr   error
}

func (c *stdioConn) SessionID() string { return "" }

// Read returns the next message for the SDK, delivering the answers to
// raw calls on the way.
func (c *stdioConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		line, err := c.readLine()
		if err != nil {
			c.failPending(err)
			return nil, err
		}
		if len(line) == 0 {
			continue
		}
		if c.deliver(line) || c.takeProgress(line) {
			continue
		}
		// The SDK may keep parts of the message; line is the reader's.
		msg, err := jsonrpc.DecodeMessage(bytes.Clone(line))
		if err != nil {
			// The SDK ends the connection on a read error.
			c.failPending(err)
		}
		if r, ok := msg.(*jsonrpc.Request); ok && c.seen != nil && !r.IsCall() && relayedInOrder(r.Method) {
			c.seen.Add(1)
		}
		return msg, err
	}
}

// readLine is the next line of stdout without its line ending. The bytes
// are valid until the next call.
func (c *stdioConn) readLine() ([]byte, error) {
	if cap(c.line) > 1<<20 {
		c.line = nil // not kept for the connection's life after one large message
	}
	b, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.line = append(c.line[:0], b...)
		for err == bufio.ErrBufferFull {
			if len(c.line) > maxLineBytes {
				return nil, fmt.Errorf("a message from the target is longer than %d bytes", maxLineBytes)
			}
			b, err = c.r.ReadSlice('\n')
			c.line = append(c.line, b...)
		}
		b = c.line
	}
	if err != nil && !(err == io.EOF && len(b) > 0) {
		return nil, err
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

// replyEnvelope is what deliver reads of a message: enough to tell a raw
// call's answer; its result stays raw.
type replyEnvelope struct {
	ID     json.RawMessage `json:"id"`
	Method *string         `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  *jsonrpc.Error  `json:"error"`
}

// deliver hands line to the raw call it answers, if it answers one.
func (c *stdioConn) deliver(line []byte) bool {
	// Only a message carrying a raw id is decoded here; others go to the
	// SDK untouched.
	if !bytes.Contains(line, []byte(`"`+rawIDPrefix)) {
		return false
	}
	env, ok := scanReply(line)
	if !ok {
		env = replyEnvelope{}
		if json.Unmarshal(line, &env) != nil || env.Method != nil {
			return false
		}
	}
	id, err := strconv.Unquote(string(env.ID))
	if err != nil {
		return false
	}
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if !ok {
		return true // an answer to a call given up on
	}
	switch {
	case env.Error != nil:
		ch <- rawReply{err: env.Error}
	case len(env.Result) == 0:
		ch <- rawReply{err: &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the target answered with neither result nor error"}}
	default:
		// line's bytes belong to the reader's buffer.
		ch <- rawReply{result: bytes.Clone(env.Result)}
	}
	return true
}

// scanReply is what deliver reads of a response (one without a method),
// found by scanning; ok is false if the line must be decoded in full to
// tell: not valid JSON (then Unmarshal refuses it too), a request, a
// member repeated or named in another case or with escapes (which
// encoding/json would match to a field).
func scanReply(line []byte) (env replyEnvelope, ok bool) {
	if !json.Valid(line) {
		return env, false
	}
	var seen uint8
	ok = eachMember(line, func(k, v []byte) bool {
		var bit uint8
		switch string(k) {
		case "id":
			bit, env.ID = 1, v
		case "result":
			bit, env.Result = 2, v
		case "error":
			bit = 4
			if string(v) != "null" && json.Unmarshal(v, &env.Error) != nil {
				return false
			}
		default:
			return !foldsTo(k, "id", "method", "result", "error")
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
	return env, ok
}

// foldsTo reports whether k is one of names in some case, as
// encoding/json matches keys to fields.
func foldsTo(k []byte, names ...string) bool {
	for _, n := range names {
		if bytes.EqualFold(k, []byte(n)) {
			return true
		}
	}
	return false
}

// takeProgress offers a progress notification to the progress hook. The
// SDK would hand it to its handlers on another goroutine, so it could
// reach the client after the answer it precedes; taken here, it is
// relayed before the reader goes on.
func (c *stdioConn) takeProgress(line []byte) bool {
	if c.progress == nil || !bytes.Contains(line, []byte(`"notifications/progress"`)) {
		return false
	}
	var n struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(line, &n) != nil || n.ID != nil || n.Method != "notifications/progress" {
		return false
	}
	return c.progress(n.Params)
}

func (c *stdioConn) failPending(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = fmt.Errorf("%w: %v", sdk.ErrConnectionClosed, err)
	}
	for id, ch := range c.pending {
		delete(c.pending, id)
		ch <- rawReply{err: c.readErr}
	}
}

func (c *stdioConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("marshaling message: %v", err)
	}
	return c.writeLine(data)
}

func (c *stdioConn) writeLine(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w.Write(data)
	c.w.WriteByte('\n')
	return c.w.Flush()
}

// encodeCall is the JSON of a request, as json.Marshal of the JSON-RPC
// envelope would write it (HTML characters in arguments aside, which it
// leaves as the client sent them). The common tools/call (a name and raw
// arguments, nothing else) is written without reflection: it is every
// fast-path call.
func encodeCall(id, method string, params any) ([]byte, error) {
	p, ok := params.(*sdk.CallToolParams)
	var args json.RawMessage
	if ok {
		args, ok = p.Arguments.(json.RawMessage)
		if p.Arguments == nil {
			ok = true
		}
	}
	if !ok || p.Meta != nil || p.InputResponses != nil || p.RequestState != "" {
		return json.Marshal(struct {
			JSONRPC string `json:"jsonrpc"`
			ID      string `json:"id"`
			Method  string `json:"method"`
			Params  any    `json:"params,omitempty"`
		}{"2.0", id, method, params})
	}
	buf := make([]byte, 0, 64+len(id)+len(method)+len(p.Name)+len(args))
	buf = append(buf, `{"jsonrpc":"2.0","id":`...)
	buf = strconv.AppendQuote(buf, id)
	buf = append(buf, `,"method":`...)
	buf, err := appendJSONString(buf, method)
	if err != nil {
		return nil, err
	}
	buf = append(buf, `,"params":{"name":`...)
	if buf, err = appendJSONString(buf, p.Name); err != nil {
		return nil, err
	}
	if len(args) > 0 {
		buf = append(buf, `,"arguments":`...)
		// Compacted, as Marshal would: a newline inside would end the
		// message early on the target's stdin.
		w := bytes.NewBuffer(buf)
		if err := json.Compact(w, args); err != nil {
			return nil, fmt.Errorf("json: error calling MarshalJSON for type json.RawMessage: %w", err)
		}
		buf = w.Bytes()
	}
	return append(buf, "}}"...), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(buf []byte, s string) ([]byte, error) {
	q, err := json.Marshal(s)
	return append(buf, q...), err
}

// call sends a request and returns its result as the target sent it. If
// ctx ends first, the target is told the request is cancelled.
func (c *stdioConn) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	id := rawIDPrefix + strconv.FormatInt(c.seq.Add(1), 10)
	data, err := encodeCall(id, method, params)
	if err != nil {
		return nil, err
	}
	ch := make(chan rawReply, 1)
	c.mu.Lock()
	if c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		return nil, err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	if err := c.writeLine(data); err != nil {
		forget()
		return nil, fmt.Errorf("%w: %v", sdk.ErrConnectionClosed, err)
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		forget()
		note, _ := json.Marshal(struct {
			JSONRPC string              `json:"jsonrpc"`
			Method  string              `json:"method"`
			Params  sdk.CancelledParams `json:"params"`
		}{"2.0", "notifications/cancelled", sdk.CancelledParams{RequestID: id, Reason: ctx.Err().Error()}})
		go c.writeLine(note) // best effort, not on the caller's way out
		return nil, ctx.Err()
	}
}

// Close ends the connection as the MCP spec asks of a stdio client:
// close the child's stdin, wait for it to exit, SIGTERM it if it does
// not within terminateGrace, and SIGKILL it after as long again.
func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() {
		c.failPending(errors.New("connection closed"))
		c.wmu.Lock()
		c.stdin.Close()
		c.wmu.Unlock()
		// Wait only now: it closes stdout, which Read may still be
		// draining until the child exits.
		go func() { c.waitErr = c.cmd.Wait(); close(c.exited) }()
		wait := func() bool {
			select {
			case <-c.exited:
				return true
			case <-time.After(terminateGrace):
				return false
			}
		}
		if !wait() && c.cmd.Process.Signal(syscall.SIGTERM) == nil && !wait() {
			c.cmd.Process.Kill()
			if !wait() {
				c.closeErr = errors.New("unresponsive MCP target process")
				return
			}
		}
		if c.waitErr != nil {
			c.closeErr = c.waitErr
		}
	})
	return c.closeErr
}

// rawResult is a target's tools/call result passed to the client as the
// target sent it.
type rawResult struct {
	sdk.ResultBase
	json    json.RawMessage
	isError bool                // the result's isError, for the access log
	typed   *sdk.CallToolResult // instead, where the SDK must see the result's fields
}

func (r *rawResult) MarshalJSON() ([]byte, error) { return r.json, nil }

// callTool is a raw tools/call. A client of the sessionless protocol
// (2026-07-28 and later, which the SDK answers by annotating the result)
// gets the result decoded (typed) instead.
func (c *stdioConn) callTool(ctx context.Context, params *sdk.CallToolParams, typed bool) (*rawResult, error) {
	b, err := c.call(ctx, "tools/call", params)
	if err != nil {
		return nil, err
	}
	if typed {
		var res sdk.CallToolResult
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the target's tools/call result: " + err.Error()}
		}
		return &rawResult{typed: &res}, nil
	}
	isError, ok := scanIsError(b)
	if !ok {
		var flag struct {
			IsError bool `json:"isError"`
		}
		if err := json.Unmarshal(b, &flag); err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the target's tools/call result is not a JSON object: " + err.Error()}
		}
		isError = flag.IsError
	}
	return &rawResult{json: b, isError: isError}, nil
}

// scanIsError is a tools/call result's isError, found by scanning the
// result (valid JSON: deliver saw it so); ok is false if it must be
// decoded in full to tell (not an object, isError not a boolean, or
// named as encoding/json would match it but not exactly).
func scanIsError(result []byte) (isError, ok bool) {
	ok = eachMember(result, func(k, v []byte) bool {
		if string(k) == "isError" {
			switch string(v) {
			case "true":
				isError = true
			case "false":
				isError = false
			default:
				return false
			}
			return true
		}
		return !foldsTo(k, "isError")
	})
	return isError, ok
}

// usesSessionlessProtocol reports whether a request's _meta selects the
// sessionless protocol (SEP-2575).
func usesSessionlessProtocol(meta sdk.Meta) bool {
	_, ok := meta[sdk.MetaKeyProtocolVersion]
	return ok
}
