package probe

import (
	"context"
	"fmt"
	"net"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// TCP probes pass when a connection to host:port opens.
const TCP = "tcp"

var tcpKind = Kind{
	Attributes: []hcl2.AttributeSchema{{Name: "address", Required: true}},
	Target:     func(c *Config) string { return "connect " + c.Address },
	Prober:     TCPProber{},
}

var _ Prober = TCPProber{}

// TCPProber runs tcp probes.
type TCPProber struct{}

func (TCPProber) Probe(ctx context.Context, c *Config, _ map[string]string) (bool, string) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return false, fmt.Sprintf("tcp %s: %v", c.Address, err)
	}
	conn.Close()
	return true, fmt.Sprintf("tcp %s: connected", c.Address)
}
