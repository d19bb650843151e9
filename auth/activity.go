package auth

import "time"

// Connection is one live MQTT connection that authenticated as a device.
type Connection struct {
	ClientID   string    `json:"client_id"`
	RemoteAddr string    `json:"remote_addr"`
	Listener   string    `json:"listener"`
	Since      time.Time `json:"connected_at"`
}

// Activity is what a running broker knows of a device: its live
// connections and when it last published an accepted entry. A server
// that is not running knows nothing, so its Activity is empty.
type Activity struct {
	Connections []Connection `json:"connections"`
	// LastPublish is nil when the device has not published since the
	// server started.
	LastPublish *time.Time `json:"last_publish_at"`
}

// WithActivity returns j showing a; connections are [] rather than null
// when there are none.
func (j DeviceJSON) WithActivity(a Activity) DeviceJSON {
	if a.Connections == nil {
		a.Connections = []Connection{}
	}
	j.Activity = &a
	return j
}
