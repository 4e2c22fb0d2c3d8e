package fake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// getPolicy answers the policy as HuJSON (comments kept), or as plain JSON
// when the caller asks for application/json, with its quoted ETag.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, c caller) {
	s.mu.Lock()
	p := slices.Clone(s.policyLocked())
	s.mu.Unlock()
	writePolicy(w, r, p)
}

func writePolicy(w http.ResponseWriter, r *http.Request, p []byte) {
	w.Header().Set("ETag", policyETag(p))
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		std, err := hujson.Standardize(slices.Clone(p))
		if err == nil {
			var buf bytes.Buffer
			if json.Compact(&buf, std) == nil {
				w.Header().Set("Content-Type", "application/json")
				w.Write(buf.Bytes())
				return
			}
		}
		// A seeded policy that is not valid HuJSON: fall through and
		// send it as stored.
	}
	w.Header().Set("Content-Type", "application/hujson")
	w.Write(p)
}

// setPolicy replaces the whole policy file. With If-Match, the write
// happens only if the policy is still the one the caller read; the check
// and the write are atomic, so concurrent editors get 412 and retry.
func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if _, perr := parsePolicy(body); perr != nil {
		writePolicyError(w, perr.status(), perr)
		return
	}
	ifMatch := strings.Trim(strings.TrimSpace(r.Header.Get("If-Match")), `"`)
	s.mu.Lock()
	if ifMatch != "" {
		current := strings.Trim(policyETag(s.policyLocked()), `"`)
		matches := ifMatch == current || (ifMatch == defaultETagAlias && s.policy == nil)
		if !matches {
			s.mu.Unlock()
			writeError(w, http.StatusPreconditionFailed, "precondition failed, invalid old hash")
			return
		}
	}
	s.policy = slices.Clone(body)
	s.mu.Unlock()
	s.onPolicyChange()
	writePolicy(w, r, body)
}

// validatePolicy checks a policy (or a list of tests against the current
// policy) without saving it. Like the real API it answers 200 either way:
// the policy is invalid iff the body has a non-empty "message".
func (s *Server) validatePolicy(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var perr *policyError
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
		perr = s.validateTests(trimmed)
	} else {
		_, perr = parsePolicy(body)
	}
	if perr != nil {
		// An invalid policy is a 200 with a message; a server error
		// (which Tailscale answers for some policies) stays one.
		status := http.StatusOK
		if perr.status() >= 500 {
			status = perr.status()
		}
		writePolicyError(w, status, perr)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) validateTests(body []byte) *policyError {
	std, err := hujson.Standardize(slices.Clone(body))
	if err != nil {
		return invalid("parsing tests: %v", err)
	}
	var tests []policyTest
	if err := json.Unmarshal(std, &tests); err != nil {
		return invalid("parsing tests: %v", err)
	}
	doc, perr := parsePolicy(s.Policy())
	if perr != nil {
		return invalid("current policy is invalid: %s", perr.Message)
	}
	return doc.runTests(tests)
}

func writePolicyError(w http.ResponseWriter, status int, perr *policyError) {
	v := map[string]any{"message": perr.Message}
	if len(perr.Data) > 0 {
		v["data"] = perr.Data
	}
	writeJSON(w, status, v)
}

// createKeyRequest is the union of the auth-key and OAuth-client bodies of
// POST /tailnet/{tailnet}/keys.
type createKeyRequest struct {
	KeyType      string `json:"keyType"`
	Capabilities struct {
		Devices struct {
			Create struct {
				Reusable      bool     `json:"reusable"`
				Ephemeral     bool     `json:"ephemeral"`
				Preauthorized bool     `json:"preauthorized"`
				Tags          []string `json:"tags"`
			} `json:"create"`
		} `json:"devices"`
	} `json:"capabilities"`
	ExpirySeconds int64    `json:"expirySeconds"`
	Description   string   `json:"description"`
	Scopes        []string `json:"scopes"`
	Tags          []string `json:"tags"`
	// A federated identity's trust.
	Issuer           string            `json:"issuer"`
	Subject          string            `json:"subject"`
	Audience         string            `json:"audience"`
	CustomClaimRules map[string]string `json:"customClaimRules"`
}

// maxAuthKeyExpiry is the longest auth key lifetime the API allows.
const maxAuthKeyExpiry = 90 * 24 * time.Hour

// maxDescription is the API's limit on key descriptions.
const maxDescription = 50

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, c caller) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req createKeyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	// Each key type: the scope that may create it, the op name a test's
	// FailNext queues a failure for, and its creation.
	var scope, fault string
	var create func(http.ResponseWriter, caller, *createKeyRequest)
	switch req.KeyType {
	case "", KeyTypeAuth:
		scope, fault, create = "auth_keys", "keys.create_authkey", s.createAuthKey
	case KeyTypeClient:
		scope, fault, create = "oauth_keys", "keys.create_client", s.createOAuthClient
	case KeyTypeFederated:
		scope, fault, create = "oauth_keys", "keys.create_federated", s.createFederatedIdentity
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unsupported keyType %q", req.KeyType))
		return
	}
	if !hasScope(c.scopes(), scope) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("calling actor does not have enough permissions to perform this function: needs scope %q", scope))
		return
	}
	if s.injected(w, fault) {
		return
	}
	create(w, c, &req)
}

// currentPolicyLocked returns the current policy decoded but not
// validated (tag ownership does not depend on, say, a failing test), or an
// empty one if a seeded policy does not even parse.
func (s *Server) currentPolicyLocked() *policyDoc {
	doc, perr := decodePolicy(s.policyLocked())
	if perr != nil {
		return &policyDoc{}
	}
	return doc
}

// checkTagsLocked refuses tags that the policy does not define or, for a
// caller whose token comes from an OAuth client, that the client does not
// own: the real API's "requested tags are invalid or not permitted".
func (s *Server) checkTagsLocked(c caller, tags []string) error {
	doc := s.currentPolicyLocked()
	var bad []string
	var clientTags []string
	if c.fromOAuth() {
		if cl := s.keys[c.key.ClientID]; cl != nil {
			clientTags = cl.Tags
		}
	}
	for _, t := range tags {
		_, defined := doc.TagOwners[t]
		switch {
		case !strings.HasPrefix(t, "tag:") || !defined:
			bad = append(bad, t)
		case c.fromOAuth() && !doc.tagOwnedBy(t, clientTags):
			bad = append(bad, t)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("requested tags %v are invalid or not permitted", bad)
	}
	return nil
}

func (s *Server) createAuthKey(w http.ResponseWriter, c caller, req *createKeyRequest) {
	create := req.Capabilities.Devices.Create
	exp := time.Duration(req.ExpirySeconds) * time.Second
	switch {
	case req.ExpirySeconds < 0:
		writeError(w, http.StatusBadRequest, "expirySeconds must not be negative")
		return
	case req.ExpirySeconds == 0:
		exp = maxAuthKeyExpiry
	case exp > maxAuthKeyExpiry:
		writeError(w, http.StatusBadRequest, "expirySeconds must be at most 90 days")
		return
	}
	if len(req.Description) > maxDescription {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("description must be at most %d characters", maxDescription))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.fromOAuth() && len(create.Tags) == 0 {
		writeError(w, http.StatusBadRequest, "auth keys created by an OAuth client must have tags")
		return
	}
	if err := s.checkTagsLocked(c, create.Tags); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	secret, k := s.addKeyLocked(KeyInfo{
		Type:        KeyTypeAuth,
		Description: req.Description,
		Tags:        slices.Clone(create.Tags),
		ClientID:    c.key.ClientID,
		Ephemeral:   create.Ephemeral,
		Reusable:    create.Reusable,
		Preauth:     create.Preauthorized,
		Expires:     s.now().Add(exp),
	}, prefixAuth)
	resp := map[string]any{
		"id":            k.ID,
		"keyType":       KeyTypeAuth,
		"key":           secret,
		"description":   k.Description,
		"created":       k.Created.UTC().Format(time.RFC3339),
		"expires":       k.Expires.UTC().Format(time.RFC3339),
		"expirySeconds": int64(exp / time.Second),
		"capabilities":  req.Capabilities,
		"invalid":       false,
	}
	writeJSON(w, http.StatusOK, resp)
}

// checkTrustCredential checks what OAuth clients and federated identities
// share: known scopes the caller has, at least one, a tag when a scope
// creates tagged things, a short description. It answers the refusal.
func checkTrustCredential(w http.ResponseWriter, c caller, req *createKeyRequest, what string) bool {
	if len(req.Scopes) == 0 {
		writeError(w, http.StatusBadRequest, what+" needs at least one scope")
		return false
	}
	for _, sc := range req.Scopes {
		if !knownScope(sc) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown scope %q", sc))
			return false
		}
		if !hasScope(c.scopes(), sc) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("cannot grant scope %q the caller does not have", sc))
			return false
		}
		if len(req.Tags) == 0 && (slices.Contains(scopesNeedingTags, sc) || sc == "all") {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("scope %q requires at least one tag", sc))
			return false
		}
	}
	if len(req.Description) > maxDescription {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("description must be at most %d characters", maxDescription))
		return false
	}
	return true
}

// addTrustCredential creates an OAuth client or a federated identity
// (info says which, and a federated identity's trust): it checks the
// request (checkTrustCredential, then the tags under the lock), stores the
// key with the request's description, scopes and tags, and calls answer
// with it while still holding the lock, so answer may finish the key and
// read it. A refusal is answered here and answer is not called.
func (s *Server) addTrustCredential(w http.ResponseWriter, c caller, req *createKeyRequest, what string, info KeyInfo, answer func(secret string, k *key)) {
	if !checkTrustCredential(w, c, req, what) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkTagsLocked(c, req.Tags); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	info.Description = req.Description
	info.Scopes, info.Tags = slices.Clone(req.Scopes), slices.Clone(req.Tags)
	answer(s.addKeyLocked(info, prefixClient))
}

func (s *Server) createOAuthClient(w http.ResponseWriter, c caller, req *createKeyRequest) {
	s.addTrustCredential(w, c, req, "an OAuth client", KeyInfo{Type: KeyTypeClient}, func(secret string, k *key) {
		writeJSON(w, http.StatusOK, map[string]any{
			"id":          k.ID,
			"keyType":     KeyTypeClient,
			"key":         secret,
			"description": k.Description,
			"created":     k.Created.UTC().Format(time.RFC3339),
			"scopes":      k.Scopes,
			"tags":        k.Tags,
		})
	})
}

// deleteKey revokes an auth key, API token or OAuth client. Tokens minted
// by a revoked OAuth client stop working too.
func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[id]
	if k == nil || s.revokedLocked(k) {
		writeError(w, http.StatusNotFound, "key not found")
		return
	}
	need := "oauth_keys"
	if k.Type == KeyTypeAuth {
		need = "auth_keys"
	}
	if !hasScope(c.scopes(), need) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("calling actor does not have enough permissions to perform this function: needs scope %q", need))
		return
	}
	k.revokedAt = s.now()
	k.Revoked = true
	w.WriteHeader(http.StatusOK)
}

// apiDevice is a device in the API's JSON shape.
type apiDevice struct {
	Addresses                 []string  `json:"addresses"`
	ID                        string    `json:"id"`
	NodeID                    string    `json:"nodeId"`
	User                      string    `json:"user"`
	Name                      string    `json:"name"`
	Hostname                  string    `json:"hostname"`
	ClientVersion             string    `json:"clientVersion"`
	UpdateAvailable           bool      `json:"updateAvailable"`
	OS                        string    `json:"os"`
	Created                   string    `json:"created"`
	LastSeen                  string    `json:"lastSeen,omitempty"`
	KeyExpiryDisabled         bool      `json:"keyExpiryDisabled"`
	Expires                   string    `json:"expires"`
	Authorized                bool      `json:"authorized"`
	IsExternal                bool      `json:"isExternal"`
	MachineKey                string    `json:"machineKey"`
	NodeKey                   string    `json:"nodeKey"`
	BlocksIncomingConnections bool      `json:"blocksIncomingConnections"`
	TailnetLockKey            string    `json:"tailnetLockKey"`
	TailnetLockError          string    `json:"tailnetLockError"`
	Tags                      []string  `json:"tags,omitempty"`
	IsEphemeral               bool      `json:"isEphemeral"`
	ConnectedToControl        bool      `json:"connectedToControl"`
	AdvertisedRoutes          *[]string `json:"advertisedRoutes,omitempty"`
	EnabledRoutes             *[]string `json:"enabledRoutes,omitempty"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func toAPIDevice(d Device, all bool) apiDevice {
	a := apiDevice{
		Addresses:          nonNil(d.Addresses),
		ID:                 d.NodeID,
		NodeID:             d.NodeID,
		User:               d.User,
		Name:               d.Name,
		Hostname:           d.Hostname,
		ClientVersion:      "1.102.5",
		OS:                 "linux",
		Created:            formatTime(d.Created),
		LastSeen:           formatTime(d.LastSeen),
		KeyExpiryDisabled:  len(d.Tags) > 0,
		Authorized:         true,
		Tags:               d.Tags,
		IsEphemeral:        d.Ephemeral,
		ConnectedToControl: true,
	}
	if all {
		adv, en := nonNil(d.AdvertisedRoutes), nonNil(d.EnabledRoutes)
		a.AdvertisedRoutes, a.EnabledRoutes = &adv, &en
	}
	return a
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// listDevices answers GET devices; routes only with ?fields=all, as the
// real API does.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, c caller) {
	all := r.URL.Query().Get("fields") == "all"
	devs := s.tailnet.Devices()
	out := make([]apiDevice, 0, len(devs))
	for _, d := range devs {
		out = append(out, toAPIDevice(d, all))
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (s *Server) findDevice(id string) (Device, bool) {
	for _, d := range s.tailnet.Devices() {
		if d.NodeID == id {
			return d, true
		}
	}
	return Device{}, false
}

// writeRoutes answers the device's advertised and enabled routes, the
// body of both GET and POST .../routes.
func (s *Server) writeRoutes(w http.ResponseWriter, id string) {
	d, ok := s.findDevice(id)
	if !ok {
		writeError(w, http.StatusNotFound, "device not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"advertisedRoutes": nonNil(d.AdvertisedRoutes),
		"enabledRoutes":    nonNil(d.EnabledRoutes),
	})
}

func (s *Server) getRoutes(w http.ResponseWriter, r *http.Request, c caller) {
	s.writeRoutes(w, r.PathValue("id"))
}

// setRoutes replaces the device's enabled (approved) routes. Like the real
// API it allows enabling a route the device does not advertise yet.
func (s *Server) setRoutes(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Routes *[]string `json:"routes"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if req.Routes == nil {
		writeError(w, http.StatusBadRequest, `"routes" is required`)
		return
	}
	routes := make([]string, 0, len(*req.Routes))
	for _, rt := range *req.Routes {
		p, err := netip.ParsePrefix(rt)
		if err != nil || p != p.Masked() {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid route %q: want a CIDR like 192.0.2.0/24", rt))
			return
		}
		routes = append(routes, p.String())
	}
	if err := s.tailnet.SetEnabledRoutes(id, routes); err != nil {
		s.writeDeviceChangeError(w, id, "setting routes", err)
		return
	}
	s.writeRoutes(w, id)
}

// writeDeviceChangeError answers a change to device id (doing, say
// "setting routes") that the tailnet refused: 404 for a device it does not
// have, else a 500 whose cause is logged, not answered.
func (s *Server) writeDeviceChangeError(w http.ResponseWriter, id, doing string, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "device not found")
		return
	}
	writeError(w, http.StatusInternalServerError, doing+" failed")
	s.logf("fake tsapi: %s of device %s: %v", doing, id, err)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	if err := s.tailnet.DeleteDevice(id); err != nil {
		s.writeDeviceChangeError(w, id, "deleting device", err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
