output "load_balancer_ipv4" {
  value = hcloud_load_balancer.app.ipv4
}

output "load_balancer_private_ip" {
  value = hcloud_load_balancer_network.app.ip
}

output "primary_private_ip" {
  value = hcloud_server_network.primary.ip
}

output "node_ipv4" {
  value = hcloud_server.node[*].ipv4_address
}

output "node_private_ips" {
  value = hcloud_server_network.node[*].ip
}
