package broker

import (
	"testing"
)

func TestCanonicalTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		"channels/1/subscribe":                                true,
		"channels/12/subscribe/fields/field3":                 true,
		"channels/1/subscribe/json":                           false,
		"channels/1/subscribe/json/ABCDEFGHIJKLMNOP":          false,
		"channels/1/subscribe/fields/field3/ABCDEFGHIJKLMNOP": false,
		"devices/7/sensors/field2/value":                      true,
		"devices/Greenhouse/sensors/field2/value":             false,
		"devices/7/sensors/Temperature/value":                 false,
		"other/topic":                                         false,
	} {
		if got := canonicalTopic(topic); got != want {
			t.Errorf("canonicalTopic(%q) = %v, want %v", topic, got, want)
		}
		// The fast check must agree with the full classification.
		if k := classify(topic); canonicalTopic(topic) && k&(kindLegacy|kindSensorName) != 0 {
			t.Errorf("%q: fast check says canonical, classify says %v", topic, k)
		}
	}
}
