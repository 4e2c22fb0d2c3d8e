package mcp

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The fast path's scanning reads what encoding/json would read, or
// leaves the message to the code that decodes it in full.

func TestEachMemberFindsWhatUnmarshalFinds(t *testing.T) {
	for _, obj := range []string{
		`{}`,
		` { "a" : 1 , "b":[1,{"c":"}"}], "d":"x\"}y", "e":null,"f":true,"g":-1.5e3 } `,
		`{"a":{"b":{"c":[[],{}]}},"z":"\\"}`,
		"{\n\t\"a\":\n\"b\"\n}",
	} {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(obj), &want); err != nil {
			t.Fatal(err)
		}
		got := map[string]json.RawMessage{}
		if !eachMember([]byte(obj), func(k, v []byte) bool { got[string(k)] = v; return true }) {
			t.Errorf("%s: not scanned", obj)
		}
		if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: scanned %q, Unmarshal finds %q", obj, got, want)
		}
	}
	for _, obj := range []string{`[]`, `"a"`, `{"\u0061":1}`, ``} {
		if eachMember([]byte(obj), func(k, v []byte) bool { return true }) {
			t.Errorf("%s: scanned, want it left to encoding/json", obj)
		}
	}
}

func TestDecodeFastLeavesTheUnusualToTheSDK(t *testing.T) {
	ok := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`
	if m, good := decodeFast([]byte(ok)); !good || m.Method != "tools/call" || string(m.ID) != "1" || string(m.Params) != `{"name":"a"}` {
		t.Errorf("plain call: %+v %v", m, good)
	}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}`, // repeated
		`{"jsonrpc":"2.0","id":1,"METHOD":"tools/call"}`,                 // another case
		`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call"}`,            // escaped key
		`{"jsonrpc":"1.0","id":1,"method":"tools/call"}`,
		`{"id":1,"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"method":7}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call"`, // malformed
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]`,
	} {
		if _, good := decodeFast([]byte(body)); good {
			t.Errorf("%s: taken by the fast path", body)
		}
	}
	if m, good := decodeFast([]byte(`{"jsonrpc":"2.0","id":"a","method":"tools\/call"}`)); !good || m.Method != "tools/call" {
		t.Errorf("escaped method: %+v %v", m, good)
	}
	for raw, want := range map[string]string{`"a-1"`: `"a-1"`, `"\u0061<"`: `"a\u003c"`, `7`: `7`} {
		if got, _ := canonicalID(json.RawMessage(raw)); got != want {
			t.Errorf("canonicalID(%s) = %s, want %s", raw, got, want)
		}
	}
}

func TestEncodeCallWritesWhatMarshalWrites(t *testing.T) {
	for _, p := range []*sdk.CallToolParams{
		{Name: "echo", Arguments: json.RawMessage(`{"text":"x"}`)},
		{Name: "e\"<cho>\n", Arguments: json.RawMessage("{\n  \"text\": \"a\\nb\",\n  \"n\": [1, 2]\n}")},
		{Name: "none"},
		{Name: "meta", Meta: sdk.Meta{"progressToken": "t"}, Arguments: json.RawMessage(`{}`)},
		{Name: "typed", Arguments: map[string]any{"a": 1}},
	} {
		got, err := encodeCall("tailgate-raw-1", "tools/call", p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(struct {
			JSONRPC string `json:"jsonrpc"`
			ID      string `json:"id"`
			Method  string `json:"method"`
			Params  any    `json:"params,omitempty"`
		}{"2.0", "tailgate-raw-1", "tools/call", p})
		if bytes.IndexByte(got, '\n') >= 0 {
			t.Errorf("%s: a newline would end the message early", got)
		}
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("encoded %s, Marshal writes %s", got, want)
		}
	}
	if _, err := encodeCall("x", "tools/call", &sdk.CallToolParams{Name: "a", Arguments: json.RawMessage(`{"a":`)}); err == nil {
		t.Error("invalid arguments were sent on")
	}
}

func TestScanReplyReadsWhatUnmarshalReads(t *testing.T) {
	for _, line := range []string{
		`{"jsonrpc":"2.0","id":"tailgate-raw-1","result":{"content":[],"isError":true}}`,
		`{"jsonrpc":"2.0","id":"tailgate-raw-2","error":{"code":-32602,"message":"no","data":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":"tailgate-raw-3","result":{"isError":false,"x":"}"}}`,
		`{"jsonrpc":"2.0","id":"tailgate-raw-4","result":{},"error":null}`,
	} {
		got, ok := scanReply([]byte(line))
		var want replyEnvelope
		json.Unmarshal([]byte(line), &want)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: scanned %+v (%v), Unmarshal reads %+v", line, got, ok, want)
		}
		var flag struct {
			IsError bool `json:"isError"`
		}
		json.Unmarshal(want.Result, &flag)
		if isErr, ok := scanIsError(want.Result); len(want.Result) > 0 && (!ok || isErr != flag.IsError) {
			t.Errorf("%s: isError %v (%v), Unmarshal reads %v", line, isErr, ok, flag.IsError)
		}
	}
	for _, line := range []string{
		`{"jsonrpc":"2.0","id":"tailgate-raw-1","method":"x"}`,
		`{"jsonrpc":"2.0","ID":"tailgate-raw-1","result":{}}`,
		`{"jsonrpc":"2.0","id":"tailgate-raw-1","result":{},"result":{}}`,
		`{"jsonrpc":"2.0","id":"tailgate-raw-1","result":{}`,
	} {
		if _, ok := scanReply([]byte(line)); ok {
			t.Errorf("%s: scanned, want it decoded in full", line)
		}
	}
	for _, result := range []string{`{"isError":"yes"}`, `{"ISERROR":true}`, `[]`, `{"isError":null}`} {
		if _, ok := scanIsError([]byte(result)); ok {
			t.Errorf("%s: scanned, want it decoded in full", result)
		}
	}
}
