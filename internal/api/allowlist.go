package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/allowlist"
	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// AllowlistMaxAge is how long clients and caches may keep the allowlist
// (Cache-Control: max-age). Changes are announced far longer ahead.
const AllowlistMaxAge = 300

// ReportEgressRequest is the body of POST /v1/network/egress: a runner
// host's public egress addresses.
type ReportEgressRequest struct {
	// Host names the runner host, for the operator (never published).
	Host string `json:"host"`
	// IPs are the host's public egress addresses.
	IPs []string `json:"ips"`
}

// ReportedEgress is the answer of POST /v1/network/egress: each reported
// address's entry; the host takes runs from an address once its
// active_at has passed.
type ReportedEgress struct {
	Entries []allowlist.Entry `json:"entries"`
}

// SetWebhookRequest is the body of PUT /v1/network/allowlist/webhook.
type SetWebhookRequest struct {
	URL string `json:"url"`
}

func (s *server) allowlistService() (*allowlist.Service, error) {
	if s.allowlist == nil {
		return nil, apiErr(errcode.AllowlistUnavailable, "this server does not publish a Network Allowlist")
	}
	return s.allowlist, nil
}

// queryParams refuses any query parameter but the allowed ones, and any
// given twice, so a typo (?snce=5) is an error instead of the feed's start.
func queryParams(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apiErr(errcode.BadInput, "the query string is not valid")
	}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			if quotableField.MatchString(k) {
				return nil, apiErr(errcode.BadInput, "unknown query parameter %q", k)
			}
			return nil, apiErr(errcode.BadInput, "unknown query parameter")
		}
		if len(v) > 1 {
			return nil, apiErr(errcode.BadInput, "query parameter %q appears more than once", k)
		}
	}
	return q, nil
}

func (s *server) getAllowlist(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	list, err := al.List(r.Context())
	if err != nil {
		return err
	}
	body, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	body = append(body, '\n')
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	if s.allowlistAccess == public {
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(AllowlistMaxAge))
	} else {
		// A shared cache must not hand a token-only list to anyone.
		h.Set("Cache-Control", "private, max-age="+strconv.Itoa(AllowlistMaxAge))
		h.Set("Vary", "Authorization")
	}
	if etagMatches(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2):
// "*" or any listed tag equal to etag once W/ is dropped.
func etagMatches(headers []string, etag string) bool {
	for _, h := range headers {
		for tag := range strings.SplitSeq(h, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

func (s *server) allowlistChanges(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "since", "limit")
	if err != nil {
		return err
	}
	limit := 0
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > allowlist.MaxPageSize || strconv.Itoa(n) != v {
			return apiErr(errcode.BadInput, "limit must be a number from 1 to %d", allowlist.MaxPageSize)
		}
		limit = n
	}
	if q.Has("since") && q.Get("since") == "" {
		return apiErr(errcode.BadInput, "since is empty; pass a cursor (since=0 for the start of the feed)")
	}
	page, err := al.Changes(r.Context(), q.Get("since"), limit)
	if err != nil {
		return allowlistError(err)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *server) reportEgress(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	var req ReportEgressRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Host == "" || utf8.RuneCountInString(req.Host) > 100 || strings.ContainsFunc(req.Host, isControl) {
		return apiErr(errcode.BadInput, "host is required: 1-100 printable characters naming the runner host (e.g. \"runner-eu-3\")")
	}
	if len(req.IPs) == 0 || len(req.IPs) > allowlist.MaxIPs {
		return apiErr(errcode.BadInput, "ips must list 1 to %d public addresses", allowlist.MaxIPs)
	}
	ips, err := allowlist.ParseIPList(strings.Join(req.IPs, ","))
	if err != nil {
		return allowlistError(err)
	}
	if len(ips) != len(req.IPs) {
		return apiErr(errcode.BadInput, "each entry of ips must be one address")
	}
	entries, err := al.Report(r.Context(), p.OrgID, req.Host, ips)
	if err != nil {
		return allowlistError(err)
	}
	writeJSON(w, http.StatusOK, ReportedEgress{Entries: entries})
	return nil
}

func (s *server) retireEgress(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	ip, err := allowlist.ParsePublicIP(r.PathValue("ip"))
	if err != nil {
		return allowlistError(err)
	}
	entry, err := al.Retire(r.Context(), p.OrgID, ip)
	if err != nil {
		return allowlistError(err)
	}
	writeJSON(w, http.StatusOK, entry)
	return nil
}

func (s *server) setWebhook(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	var req SetWebhookRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	created, err := al.SetWebhook(r.Context(), p.OrgID, req.URL)
	if err != nil {
		return allowlistError(err)
	}
	writeJSON(w, http.StatusOK, created)
	return nil
}

func (s *server) getWebhook(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	wh, err := al.GetWebhook(r.Context(), p.OrgID)
	if err != nil {
		return allowlistError(err)
	}
	writeJSON(w, http.StatusOK, wh)
	return nil
}

func (s *server) deleteWebhook(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	al, err := s.allowlistService()
	if err != nil {
		return err
	}
	if err := al.DeleteWebhook(r.Context(), p.OrgID); err != nil {
		return allowlistError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// allowlistError words the allowlist's errors for the API.
func allowlistError(err error) error {
	var bad *allowlist.BadInputError
	switch {
	case errors.As(err, &bad):
		return apiErr(errcode.BadInput, "%s", bad.Msg)
	case errors.Is(err, allowlist.ErrNotReporter):
		return apiErr(errcode.Forbidden, "this server takes egress reports only from the platform's own orgs (serve --egress-report-orgs); this token's org is not one")
	case errors.Is(err, allowlist.ErrConfigured):
		return apiErr(errcode.EgressConfigured, "%s comes from the server's configuration (--egress-ips); remove it there", strings.TrimSuffix(err.Error(), ": "+allowlist.ErrConfigured.Error()))
	case errors.Is(err, allowlist.ErrNotListed):
		return apiErr(errcode.NotFound, "%s", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return apiErr(errcode.NotFound, "this org has no allowlist webhook")
	}
	return err
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
