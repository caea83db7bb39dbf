# Pinned toolchain. The google provider's 7.x line has `google_sql_user.database_roles`
# (the IAM database user gets its Postgres role from the API, no SQL session needed).
# `make test` validates and plans this configuration offline against the schemas of
# google 7.46.1 and random 3.9.1 (tests/deploy/tfcheck/): the lower bounds follow them.
terraform {
  required_version = ">= 1.11" # write-only arguments (pem_private_key_wo); cross-variable validation

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.46, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.9, < 4.0"
    }
  }

  # State lives in a GCS bucket created once by hand (docs/deploy.md, step 1):
  #   terraform init -backend-config="bucket=PROJECT-tfstate"
  backend "gcs" {
    prefix = "claude-gateway"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
