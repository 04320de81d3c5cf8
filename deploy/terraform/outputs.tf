output "server_ipv4" {
  description = "Public IPv4 of the primary server: the A record of your domain (without scale_out)."
  value       = hcloud_server.app.ipv4_address
}

output "server_ipv6" {
  description = "Public IPv6 of the primary server (publish an AAAA record only if Docker is set up for IPv6: docs/DEPLOY.md)."
  value       = hcloud_server.app.ipv6_address
}

output "server_name" {
  value = hcloud_server.app.name
}

output "volume_id" {
  value = hcloud_volume.data.id
}

output "volume_device" {
  description = "The volume's device on the server; cloud-init mounts it on /mnt/data."
  value       = "/dev/disk/by-id/scsi-0HC_Volume_${hcloud_volume.data.id}"
}

output "firewall_id" {
  value = hcloud_firewall.main.id
}

output "ssh" {
  description = "How to log in (cloud-init takes a few minutes after creation)."
  value       = "ssh ${var.admin_user}@${hcloud_server.app.ipv4_address}"
}

output "load_balancer_ipv4" {
  description = "With scale_out: the A record of your domain points here instead."
  value       = var.scale_out ? module.scale_out[0].load_balancer_ipv4 : null
}

output "app_node_ipv4" {
  description = "With scale_out: public IPv4 of the additional app nodes."
  value       = var.scale_out ? module.scale_out[0].node_ipv4 : []
}

output "dns" {
  description = "The record to create at your DNS provider."
  value       = "A <your domain> -> ${var.scale_out ? module.scale_out[0].load_balancer_ipv4 : hcloud_server.app.ipv4_address} (TTL 300)"
}
