package hstest

import (
	"fmt"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// derpMapYAML renders the relay's map the way headscale's derp.paths
// files are read: YAML with tailcfg's field names lower-cased.
func derpMapYAML(r *sandbox.Relay) ([]byte, error) {
	m := r.DERPMap()
	n := m.Regions[1].Nodes[0]
	return []byte(fmt.Sprintf(`regions:
  1:
    regionid: 1
    regioncode: %s
    regionname: %s
    nodes:
      - name: %s
        regionid: 1
        hostname: %s
        ipv4: %s
        ipv6: "none"
        stunport: %d
        derpport: %d
        insecurefortests: true
        stuntestip: %s
`, m.Regions[1].RegionCode, "hstest", n.Name, n.HostName, n.IPv4, n.STUNPort, n.DERPPort, n.STUNTestIP)), nil
}
