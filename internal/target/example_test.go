package target_test

import (
	"fmt"

	"github.com/tailgate-dev/tailgate/internal/target"
)

func ExampleParseList() {
	_, err := target.ParseList([]string{"staging-box:443", "0.0.0.0/0"})
	if te, ok := err.(*target.Error); ok {
		fmt.Printf("400: target %q: %s\n", te.Target, te.Problem)
	}
	// Output:
	// 400: target "0.0.0.0/0": is an address range (CIDR); tailgate grants single hosts, so give one host:port
}
