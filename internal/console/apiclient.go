package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// The console reads and writes only through the REST API, in process:
// each call is an http.Request with the session's bearer token served by
// the API's own handler, so the API's authentication, roles and org
// boundaries decide every answer. The types below are the API's JSON as
// the console shows it (decoded here rather than imported, so the
// services under the API can change without the console noticing).

// apiError is an API error answer: its status and its error object.
type apiError struct {
	Status     int      `json:"-"`
	Code       string   `json:"code"`
	Message    string   `json:"message"`
	Step       string   `json:"step,omitempty"`
	Fragment   string   `json:"fragment,omitempty"`
	RolledBack []string `json:"rolled_back,omitempty"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Forbidden is a 403: the token's role may not do this.
func (e *apiError) Forbidden() bool { return e.Status == http.StatusForbidden }

type environment struct {
	Name           string     `json:"name"`
	CreatedAt      time.Time  `json:"created_at"`
	State          string     `json:"state"`
	PrivateNetwork *netStatus `json:"private_network,omitempty"`
}

type environmentList struct {
	Environments []environment `json:"environments"`
}

type control struct {
	Type string `json:"type,omitempty"`
	URL  string `json:"url,omitempty"`
}

type netStatus struct {
	Env              string        `json:"environment"`
	State            string        `json:"state"`
	Tag              string        `json:"tag,omitempty"`
	CIDRs            []string      `json:"granted_cidrs"`
	Warnings         []string      `json:"warnings"`
	Targets          []string      `json:"targets"`
	ConnectedAt      *time.Time    `json:"connected_at,omitempty"`
	LastVerification *verification `json:"last_verification,omitempty"`
	Control          *control      `json:"control,omitempty"`
}

type verification struct {
	At      time.Time      `json:"at"`
	OK      bool           `json:"ok"`
	Node    string         `json:"node"`
	JoinMS  float64        `json:"join_ms"`
	Targets []targetResult `json:"targets"`
}

type targetResult struct {
	Target  string       `json:"target"`
	OK      bool         `json:"ok"`
	Verdict string       `json:"verdict"`
	Hint    string       `json:"hint,omitempty"`
	Steps   []stepResult `json:"steps"`
}

type stepResult struct {
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Verdict    string   `json:"verdict"`
	Detail     string   `json:"detail,omitempty"`
	Hint       string   `json:"hint,omitempty"`
	DurationMS float64  `json:"duration_ms"`
	Addresses  []string `json:"addresses,omitempty"`
	HTTPStatus int      `json:"http_status,omitempty"`
}

// Step returns the named step (dns, tcp, tls, http), if it ran.
func (t targetResult) Step(name string) *stepResult {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}

type connectResult struct {
	Env      string          `json:"environment"`
	State    string          `json:"state"`
	Tag      string          `json:"tag"`
	CIDRs    []string        `json:"granted_cidrs"`
	Targets  []targetSummary `json:"targets"`
	Warnings []string        `json:"warnings"`
}

type targetSummary struct {
	Target  string   `json:"target"`
	Kind    string   `json:"kind"`
	Granted []string `json:"granted"`
	Warning string   `json:"warning,omitempty"`
}

type runSummary struct {
	ID        string     `json:"id"`
	Env       string     `json:"environment"`
	State     string     `json:"state"`
	Node      string     `json:"node,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
}

type runList struct {
	Runs []runSummary `json:"runs"`
}

type runDetail struct {
	runSummary
	ProxyURL string        `json:"proxy_url,omitempty"`
	NodeIP   string        `json:"node_ip,omitempty"`
	JoinMS   float64       `json:"join_ms,omitempty"`
	WarmMS   float64       `json:"warm_ms,omitempty"`
	Warm     []warmResult  `json:"warm,omitempty"`
	Events   []egressEvent `json:"events,omitempty"`
}

type warmResult struct {
	Target string  `json:"target"`
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Error  string  `json:"error,omitempty"`
}

type egressEvent struct {
	Time       time.Time `json:"time"`
	Protocol   string    `json:"protocol"`
	Host       string    `json:"host"`
	Port       uint16    `json:"port"`
	Resolved   string    `json:"resolved,omitempty"`
	Method     string    `json:"method,omitempty"`
	Status     int       `json:"status,omitempty"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	DurationNS int64     `json:"duration_ns"`
	Refused    bool      `json:"refused"`
	Reason     string    `json:"reason,omitempty"`
	ReasonText string    `json:"reason_text,omitempty"`
	Error      string    `json:"error,omitempty"`
}

type tokenInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Current   bool       `json:"current,omitempty"`
}

type tokenList struct {
	Tokens []tokenInfo `json:"tokens"`
}

type createdToken struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Role  string `json:"role"`
	Token string `json:"token"`
}

// call sends one request to the API as the holder of token and decodes a
// 2xx answer into out (which may be nil). Any other answer is an
// *apiError.
func (c *Console) call(ctx context.Context, token, method, path string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return err
	}
	req.RemoteAddr = "127.0.0.1:0" // the console, in process
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status < 200 || rec.status > 299 {
		var env struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &env) != nil || env.Error == nil {
			env.Error = &apiError{Code: "internal", Message: fmt.Sprintf("the API answered %d", rec.status)}
		}
		env.Error.Status = rec.status
		return env.Error
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// recorder is the in-memory http.ResponseWriter the API answers into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
