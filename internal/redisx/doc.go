// Package redisx builds the Redis client every medic process uses from one
// --redis.url, covering standalone, Sentinel and Cluster, and provides the
// embedded in-memory store `medic serve` and `medic demo` fall back to.
package redisx
