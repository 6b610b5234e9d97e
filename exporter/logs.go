package exporter

import (
	"io"
	"os"
	"sync"
	"time"
)

// rotatingFile is a supervised agent's stdout or stderr log: when it
// reaches max bytes it is renamed to PATH.1 (replacing the previous one)
// and a new file is started, so an agent's logs take at most 2·max.
type rotatingFile struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed chan struct{}
}

func openRotating(path string, max int64) (*rotatingFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rotatingFile{path: path, max: max, f: f, size: fi.Size(), closed: make(chan struct{})}, nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	written := 0
	for len(p) > 0 {
		room := r.max - r.size
		if room <= 0 {
			r.rotateLocked()
			room = r.max
		}
		chunk := p[:min(int64(len(p)), room)]
		n, err := r.f.Write(chunk)
		r.size += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (r *rotatingFile) rotateLocked() {
	r.f.Close()
	_ = os.Rename(r.path, r.path+".1")
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		// Keep writing somewhere rather than block the agent on a full pipe.
		f, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	r.f, r.size = f, 0
}

// copyFrom copies the pipe into the file until every writer has closed it
// (the agent and anything of its group that inherited it).
func (r *rotatingFile) copyFrom(pipe *os.File) {
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(r, pipe, buf)
	pipe.Close()
	r.Close()
}

func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return nil
	default:
	}
	close(r.closed)
	return r.f.Close()
}

func (r *rotatingFile) waitClosed(d time.Duration) {
	select {
	case <-r.closed:
	case <-time.After(d):
	}
}
