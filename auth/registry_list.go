package auth

import "slices"

// Device returns the registry's snapshot of a device. Callers must not
// modify it.
func (r *Registry) Device(id uint64) (*Device, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.devices[id]
	if !ok {
		return nil, false
	}
	return p.dev, true
}

// ChannelIDs returns the IDs of the channels the registry holds, in order.
func (r *Registry) ChannelIDs() []uint64 {
	r.mu.RLock()
	ids := make([]uint64, 0, len(r.channels))
	for id := range r.channels {
		ids = append(ids, id)
	}
	r.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// DeviceIDs returns the IDs of the devices the registry holds, in order.
func (r *Registry) DeviceIDs() []uint64 {
	r.mu.RLock()
	ids := make([]uint64, 0, len(r.devices))
	for id := range r.devices {
		ids = append(ids, id)
	}
	r.mu.RUnlock()
	slices.Sort(ids)
	return ids
}
