package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The OTLP/gRPC export methods: spans and log records.
const (
	otlpGRPCPath     = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	otlpGRPCLogsPath = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
)

// otlpGRPC carries an OTLP/HTTP exporter's requests to a collector's
// OTLP/gRPC port (agentgateway's default protocol, usually :4317) as
// calls of method. Both protocols send the same Export...ServiceRequest
// protobuf; gRPC adds a 5-byte frame and answers in trailers. Doing this
// with net/http's unencrypted HTTP/2 keeps google.golang.org/grpc out of
// the binary.
type otlpGRPC struct {
	next   http.RoundTripper
	method string
}

func newOTLPGRPC(method string) *otlpGRPC {
	t := &http.Transport{Protocols: new(http.Protocols)}
	t.Protocols.SetUnencryptedHTTP2(true) // h2c for http:// collectors
	t.Protocols.SetHTTP2(true)            // and HTTP/2 over TLS for https://
	return &otlpGRPC{next: t, method: method}
}

func (t *otlpGRPC) RoundTrip(req *http.Request) (*http.Response, error) {
	msg, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 5+len(msg)) // uncompressed flag 0, big-endian length
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	u := url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host, Path: t.method}
	out, err := http.NewRequestWithContext(req.Context(), http.MethodPost, u.String(), bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	for k, v := range req.Header {
		switch k {
		case "Content-Type", "Content-Encoding", "Content-Length", "User-Agent":
		default:
			out.Header[k] = v // config.tracing.headers become gRPC metadata
		}
	}
	out.Header.Set("Content-Type", "application/grpc")
	out.Header.Set("Te", "trailers")
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer(req, resp.StatusCode, nil, fmt.Sprintf("collector answered HTTP %d to a gRPC call", resp.StatusCode)), nil
	}
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	code, _ := strconv.Atoi(status)
	if status == "" || code != 0 {
		msg := resp.Trailer.Get("Grpc-Message") + resp.Header.Get("Grpc-Message")
		return answer(req, grpcHTTPStatus(code, status == ""), nil, fmt.Sprintf("gRPC status %s: %s", status, msg)), nil
	}
	if len(body) >= 5 && body[0] == 0 && int(binary.BigEndian.Uint32(body[1:5])) == len(body)-5 {
		body = body[5:]
	} else {
		body = nil // no (or a compressed) message: an empty response is full success
	}
	return answer(req, http.StatusOK, body, ""), nil
}

// grpcHTTPStatus maps a gRPC status to the HTTP status the OTLP/HTTP
// exporter understands: codes worth retrying (UNAVAILABLE, RESOURCE_EXHAUSTED,
// ...) become 503, the rest 400 (dropped).
func grpcHTTPStatus(code int, missing bool) int {
	switch {
	case missing:
		return http.StatusBadGateway
	case code == 1 || code == 4 || code == 8 || code == 10 || code == 11 || code == 14 || code == 15:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

func answer(req *http.Request, status int, body []byte, errMsg string) *http.Response {
	if errMsg != "" {
		body = []byte(strings.TrimSpace(errMsg))
	}
	h := http.Header{"Content-Type": {"application/x-protobuf"}}
	if errMsg != "" {
		h.Set("Content-Type", "text/plain")
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}
