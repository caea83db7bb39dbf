output "gateway_url" {
  description = "The one origin developers' Claude Code is given (forceLoginGatewayUrl; gateway.yaml listen.public_url)."
  value       = local.gateway_url
}

output "load_balancer_ip" {
  description = "Address of the load balancer: point var.domain's A record here (private DNS zone when internal)."
  value       = var.internal ? google_compute_address.internal[0].address : google_compute_global_address.external[0].address
}

output "external_ip" {
  description = "internal = false: the external load balancer's public IPv4 address (null when internal). `python -m gateway onboard --terraform-output FILE` reads it from `terraform output -json` to write gatewayInternalNetworks."
  value       = var.internal ? null : google_compute_global_address.external[0].address
}

output "certificate_source" {
  description = "Where the TLS certificate comes from (google-managed, self-managed, existing): Claude Code pins its leaf, so a new certificate makes every developer /login again. `python -m gateway fingerprint --url` prints what they will be shown."
  value       = var.certificate_source
}

output "certificate_dns_record" {
  description = "The DNS record that authorizes the Google-managed certificate (internal load balancer); create it in the public zone of var.domain."
  value = length(google_certificate_manager_dns_authorization.internal) > 0 ? {
    name = google_certificate_manager_dns_authorization.internal[0].dns_resource_record[0].name
    type = google_certificate_manager_dns_authorization.internal[0].dns_resource_record[0].type
    data = google_certificate_manager_dns_authorization.internal[0].dns_resource_record[0].data
  } : null
}

output "managed_settings" {
  description = "managed-settings.json for developer machines (push with MDM; `python -m gateway onboard --url` prints the same). Internal mode only: an external gateway also needs gatewayInternalNetworks (`python -m gateway onboard --terraform-output`)."
  value = jsonencode({
    forceLoginMethod     = "gateway"
    forceLoginGatewayUrl = local.gateway_url
  })
}

output "function_urls" {
  description = "Each function's own URL (reachable only from the VPC/load balancer: ingress is internal + load balancer)."
  value       = { for name, fn in google_cloudfunctions2_function.gateway : name => fn.service_config[0].uri }
}

output "cloud_sql_connection_name" {
  description = "PROJECT:REGION:INSTANCE for gateway.yaml store.cloud_sql.instance."
  value       = local.sql_connection_name
}

output "cloud_sql_iam_user" {
  description = "IAM database user for gateway.yaml store.cloud_sql.user."
  value       = google_sql_user.gateway.name
}

output "service_account_email" {
  description = "The gateway's runtime identity (also the GKE Workload Identity target)."
  value       = google_service_account.gateway.email
}

output "secret_ids" {
  description = "Secret Manager names to use in gateway.yaml as $${secret:NAME/versions/V}."
  value       = { for key, secret in google_secret_manager_secret.gateway : key => secret.id }
}
