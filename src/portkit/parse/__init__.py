"""Text/bytes -> model: /proc/net, sock_diag messages, nft -j JSON, conntrack."""
