package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// The console reads and writes only through the REST API, in process:
// each call is an http.Request with the session's bearer token served by
// the API's own handler, so the API's authentication, roles and org
// boundaries decide every answer. Answers decode into the API's own
// types: they are its contract.

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

// getForPage GETs path from the API as the session's holder into out, for a page
// that has nothing to show without it: any failure is answered with the
// failure page (apiFailure) and getForPage returns false.
func (c *Console) getForPage(w http.ResponseWriter, r *http.Request, s *session, path string, out any) bool {
	if err := c.call(r.Context(), s.token, http.MethodGet, path, nil, out); err != nil {
		c.apiFailure(w, r, s, err)
		return false
	}
	return true
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
