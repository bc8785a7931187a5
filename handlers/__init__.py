"""Lambda handlers of the market-data pipeline and the core they share.

This package is what gets zipped into every function: it may import only the standard library,
boto3/botocore (in the Lambda runtime) and aws_lambda_powertools (from the AWS layer).
"""
