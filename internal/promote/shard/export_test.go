package shard

import (
	"context"
	"slices"
)

// Tick runs one round of the Manager (list, register, renew, topology, acquire), for tests
// that drive a fake clock.
func (m *Manager) Tick(ctx context.Context) { m.tick(ctx) }

// Stop is what Run does when its context ends.
func (m *Manager) Stop() { m.stop() }

// Held returns the shards whose Leases this replica holds, in order.
func (m *Manager) Held() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, 0, len(m.held))
	for n := range m.held {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
