package broker

import (
	"net/http/httptest"
	"testing"
)

// TestOriginRebinding: a same-origin page is trusted only under a host
// DNS rebinding cannot point at the broker.
func TestOriginRebinding(t *testing.T) {
	p, err := newOriginPolicy([]string{"https://dash.example.com"}, "broker.example.com:8083", ":8084")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, origin string
		ok           bool
	}{
		{"evil.example:8083", "http://evil.example:8083", false}, // rebinding
		{"evil.example", "http://evil.example", false},
		{"127.0.0.1:8083", "http://127.0.0.1:8083", true},
		{"[::1]:8083", "http://[::1]:8083", true},
		{"192.168.1.5:8083", "http://192.168.1.5:8083", true},
		{"localhost:8083", "http://LOCALHOST:8083", true},
		{"app.localhost:8083", "http://app.localhost:8083", true},
		{"broker.example.com:8083", "https://broker.example.com:8083", true},
		{"Broker.Example.com:8083", "http://broker.example.com:8083", true},
		{"127.0.0.1:8083", "http://127.0.0.1:9999", false},
		{"127.0.0.1:8083", "http://evil.example", false},
		{"evil.example", "https://dash.example.com", true},
		{"evil.example", "", true},
	} {
		r := httptest.NewRequest("GET", "http://"+tc.host+"/mqtt", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := p.allows(r); got != tc.ok {
			t.Errorf("Host %s, Origin %q: allowed %v, want %v", tc.host, tc.origin, got, tc.ok)
		}
	}
}
