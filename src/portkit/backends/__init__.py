"""OS access behind small Protocols: sockets, nft, conntrack, network namespaces."""
