// Package addrtest hands tests loopback addresses to give servers that take an address,
// not a listener (the promoter's --addr, --health-addr, --webhook-addr).
package addrtest

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	mu        sync.Mutex
	handedOut = map[string]bool{}
)

// Free returns a loopback address free a moment ago, never one it returned before in this
// process: the kernel may hand a just-closed port out again at once, and a test that asks for
// several (API, probes, notifications) would then get two the same.
//
// The port is below the kernel's ephemeral range (ip_local_port_range), where no outgoing
// connection is ever given one: a port from 127.0.0.1:0 is in that range, and between this
// call and the server's bind one of the many client connections of the tests running in
// parallel could take it ("address already in use", or a listener that never came up and
// "connection refused" for the test). The e2e stack picks its ports the same way.
func Free(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	low := ephemeralLow()
	for tries := 0; ; tries++ {
		if tries > 1000 {
			tb.Fatalf("no free loopback port below %d after 1000 tries", low)
		}
		addr := "127.0.0.1:" + strconv.Itoa(10000+rand.IntN(low-10000))
		if handedOut[addr] {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		ln.Close()
		handedOut[addr] = true
		return addr
	}
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when unknown).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > 11000 {
				return low
			}
		}
	}
	return 32768
}
