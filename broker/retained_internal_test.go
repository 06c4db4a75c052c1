package broker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/store"
)

// A retained message another instance set through a shared Store keeps
// its MQTT 5.0 properties and expiry here, as one loaded at start does.
func TestApplyRetainedKeepsPropertiesAndExpiry(t *testing.T) {
	b, err := New(Options{})
	require.NoError(t, err)
	b.applyRetained(RetainedKey("A", "r.x"), &store.Message{Subject: []byte("r.x"), Payload: []byte("v"), QoS: 1,
		Props: []byte{0x03, 0, 1, 't'}, Expires: 42})
	b.applyRetained(RetainedKey("A", "r.plain"), &store.Message{Subject: []byte("r.plain"), Payload: []byte("p")})
	s, err := b.LocalAs("reader", &auth.Identity{Name: "reader", Account: "A"})
	require.NoError(t, err)
	got := map[string]Extension{}
	s.sess.Retained([][]byte{[]byte("r.>")}, nil, func(m *Message) { got[string(m.Subject)] = m.Ext })
	require.Equal(t, StoredExt{Props: []byte{0x03, 0, 1, 't'}, Expires: 42}, got["r.x"])
	require.Contains(t, got, "r.plain")
	require.Nil(t, got["r.plain"], "no properties: no extension")
}
