# MLflow's artifacts: a versioned, encrypted bucket that nobody outside the account can read,
# used only through the tracking server (MLFLOW_ARTIFACTS_DESTINATION=s3://<bucket>/artifacts),
# and the policy that lets MLflow's task role use exactly this bucket.
variable "name" {
  description = "Name prefix (the bucket is <name>-mlflow-artifacts)."
  type        = string
}
variable "force_destroy" {
  description = "Delete the bucket with its objects (only for throwaway and mocked environments)."
  type        = bool
}

locals {
  bucket = "${var.name}-mlflow-artifacts"
  arn    = "arn:aws:s3:::${local.bucket}" # known at plan time, so the policy is too
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:access logging needs the account's log bucket, which this module does not own
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice of the account, not a deployability check
  #checkov:skip=CKV2_AWS_62:nothing consumes object events; MLflow reads artifacts through its own API
  bucket        = local.bucket
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  #checkov:skip=CKV_AWS_145:encrypted with S3's KMS key (aws/s3); a customer-managed key is an account policy choice
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Only TLS: a request over plain HTTP is refused whoever sends it (rule artifacts-deny-plain-http).
resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.tls_only.json
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyPlainHTTP"
    effect  = "Deny"
    actions = ["s3:*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = [local.arn, "${local.arn}/*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "use" {
  statement {
    sid       = "ListTheBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.arn]
  }
  statement {
    sid       = "ReadAndWriteArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.arn}/*"]
  }
}

output "bucket" {
  value = aws_s3_bucket.this.bucket
}
output "arn" {
  value = aws_s3_bucket.this.arn
}
output "policy_json" {
  description = "The policy that MLflow's task role gets: this bucket and nothing else."
  value       = data.aws_iam_policy_document.use.json
}
