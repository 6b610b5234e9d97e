// Package execx runs external commands the only way medic runs them: as an
// argv (never a shell string), in a process group of their own, with a
// timeout after which the whole group is killed, and with output capped.
package execx
