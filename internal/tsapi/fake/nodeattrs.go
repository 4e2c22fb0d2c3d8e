package fake

import (
	"net/http"
	"net/netip"
	"strings"
)

// nodeAttr is one entry of "nodeAttrs": attributes (or an IP pool) applied
// to the devices its targets select.
type nodeAttr struct {
	Target []string `json:"target"`
	Attr   []string `json:"attr"`
	IPPool []string `json:"ipPool"`
}

// quad100 is the range Tailscale keeps for its own services
// (100.100.100.100 and neighbours); an IP pool may not overlap it.
var quad100 = netip.MustParsePrefix("100.100.100.0/24")

// checkNodeAttrs applies the target and ipPool checks. Empty entries,
// empty target arrays and unknown attribute names are accepted, as they
// are by Tailscale (captured: nodeattrs-error-e1, -e5, -e7, -attr-c11).
func (d *policyDoc) checkNodeAttrs() *policyError {
	for _, na := range d.NodeAttrs {
		for _, t := range na.Target {
			if perr := d.checkNodeAttrTarget(t); perr != nil {
				return perr
			}
		}
		for _, p := range na.IPPool {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return invalid("ipPool %q is not a CIDR", p)
			}
			if pfx.Overlaps(quad100) {
				return invalid("IPPool(%s): network within reserved range", pfx) // captured: -e4
			}
		}
	}
	return nil
}

func (d *policyDoc) checkNodeAttrTarget(t string) *policyError {
	switch {
	case t == "*":
		return nil
	case t == "autogroup:self":
		// Tailscale answers this with a bare 500 (captured: -e3); the
		// fake does the same rather than invent a friendlier verdict.
		return &policyError{Message: "internal server error", Status: http.StatusInternalServerError}
	case strings.HasPrefix(t, "tag:"):
		if _, ok := d.TagOwners[t]; !ok {
			return invalid("%v", tagNotFound(t)) // captured: -e6
		}
		return nil
	}
	if err := d.checkCommon(t); err != nil {
		if strings.HasPrefix(t, "group:") {
			return invalid("%v", err)
		}
		return invalid("%q: invalid address", t) // captured: -e2
	}
	return nil
}
