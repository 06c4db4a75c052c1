package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// wsConnect is the CONNECT a nats.go client sends over WebSocket, with
// verbose off.
const wsConnect = `CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"","lang":"go","version":"1.55.0","protocol":1,"echo":true,"headers":true,"no_responders":true}` + "\r\nPING\r\n"

// rawWSConnect opens a NATS-over-WebSocket connection by hand, the way
// nats.go does, without keeping a nats.go client (two goroutines and
// buffers per connection) in the driver: an HTTP/1.1 upgrade on path /
// (no compression offered), then INFO read from the server's frames, one
// masked binary frame with CONNECT and PING, and frames read until PONG.
// It returns the open, idle connection.
func rawWSConnect(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { _ = c.Close(); return nil, err }
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))

	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(fmt.Errorf("reading the upgrade response: %w", err))
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("upgrade refused: %s", resp.Status))
	}
	sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		return fail(fmt.Errorf("bad Sec-WebSocket-Accept %q", got))
	}

	r := bufio.NewReaderSize(&wsReader{r: br, c: c}, 4096)
	line, err := r.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("reading INFO: %w", err))
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fail(fmt.Errorf("expected INFO, got %q", line))
	}
	if err := writeWSFrame(c, 0x2, []byte(wsConnect)); err != nil {
		return fail(err)
	}
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			return fail(fmt.Errorf("waiting for PONG: %w", err))
		}
		// nats-server follows CONNECT with a second INFO (connect_info),
		// before or after PONG: anything still buffered is left unread.
		switch line = strings.TrimSpace(line); {
		case line == "PONG":
			_ = c.SetDeadline(time.Time{})
			return c, nil
		case line == "+OK", strings.HasPrefix(line, "INFO "):
		default:
			return fail(fmt.Errorf("unexpected %q", line))
		}
	}
}

// writeWSFrame writes one final, masked client frame.
func writeWSFrame(w io.Writer, opcode byte, payload []byte) error {
	hdr := make([]byte, 0, 14)
	hdr = append(hdr, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	hdr = append(hdr, mask[:]...)
	buf := append(hdr, payload...)
	for i := range payload {
		buf[len(hdr)+i] ^= mask[i&3]
	}
	_, err := w.Write(buf)
	return err
}

// wsReader reads the payload of a server's data frames as one stream,
// answering pings and failing on close.
type wsReader struct {
	r    *bufio.Reader
	c    net.Conn
	left uint64 // payload bytes left in the current data frame
	mask [4]byte
	pos  uint64 // payload offset in the current frame (for unmasking)
	mskd bool
}

func (w *wsReader) Read(p []byte) (int, error) {
	for w.left == 0 {
		var h [2]byte
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			return 0, err
		}
		opcode := h[0] & 0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(w.r, b[:]); err != nil {
				return 0, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(w.r, b[:]); err != nil {
				return 0, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		w.mskd = h[1]&0x80 != 0
		if w.mskd {
			if _, err := io.ReadFull(w.r, w.mask[:]); err != nil {
				return 0, err
			}
		}
		w.pos = 0
		switch opcode {
		case 0x0, 0x1, 0x2: // continuation, text, binary
			w.left = n
		case 0x8:
			return 0, fmt.Errorf("server sent a close frame")
		case 0x9, 0xa: // ping, pong: control payloads are at most 125 bytes
			if n > 125 {
				return 0, fmt.Errorf("control frame of %d bytes", n)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(w.r, b); err != nil {
				return 0, err
			}
			if w.mskd {
				for i := range b {
					b[i] ^= w.mask[i&3]
				}
			}
			if opcode == 0x9 {
				if err := writeWSFrame(w.c, 0xa, b); err != nil {
					return 0, err
				}
			}
		default:
			return 0, fmt.Errorf("unexpected frame opcode %#x", opcode)
		}
	}
	if uint64(len(p)) > w.left {
		p = p[:w.left]
	}
	n, err := w.r.Read(p)
	if w.mskd {
		for i := range p[:n] {
			p[i] ^= w.mask[(w.pos+uint64(i))&3]
		}
	}
	w.pos += uint64(n)
	w.left -= uint64(n)
	return n, err
}
