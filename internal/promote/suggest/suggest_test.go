package suggest

import "testing"

func TestClosest(t *testing.T) {
	known := []string{"constraint", "strategy", "interval", "image"}
	tests := []struct{ in, want string }{
		{"constrant", "constraint"}, // one letter left out
		{"Strategy", "strategy"},    // case only
		{"intreval", "interval"},    // two letters swapped: distance 2
		{"platfrom", ""},            // nothing near enough
		{"", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.in, known); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
