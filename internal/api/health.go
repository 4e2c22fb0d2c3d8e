package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// readyTimeout bounds the database check of GET /readyz, so a probe gets
// an answer before its own timeout even when the database hangs.
const readyTimeout = 3 * time.Second

// Readiness is the answer of GET /readyz: {"status": "ready"}, or 503 with
// {"status": "not_ready", "reason": "..."}.
type Readiness struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// readyz answers whether this server can serve requests: its database
// answers and has exactly the schema this binary migrates to. Liveness
// (GET /healthz) asks only whether the process answers HTTP. The reason
// is in tailgate's words; the driver's error, which may name a path or a
// host, goes to the log only.
func (s *server) readyz(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	err := s.store.Ready(ctx)
	if err == nil {
		writeJSON(w, http.StatusOK, Readiness{Status: "ready"})
		return nil
	}
	s.log.Warn("not ready", "err", redact(err.Error()))
	reason := "database unreachable"
	if errors.Is(err, store.ErrSchemaNotCurrent) {
		// "database schema not current: the database is at schema
		// version 1, this tailgate needs 2" names versions, nothing else.
		_, detail, _ := strings.Cut(err.Error(), ": ")
		reason = "database migrations not current: " + detail
	}
	writeJSON(w, http.StatusServiceUnavailable, Readiness{Status: "not_ready", Reason: reason})
	return nil
}
