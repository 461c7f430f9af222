import Foundation
import LifeboatAWSCore
import LifeboatCore
import LifeboatRepository
import LifeboatTesting
import Testing

/// Credentials, region and endpoint are found where the AWS CLI finds them, in the same order.
struct S3SettingsTests {
    @Test func resolvesLikeTheAWSCLI() async throws {
        let sandbox = try TestSandbox("awsconf")
        defer { Task { await sandbox.remove() } }
        let credentials = try sandbox.file("credentials", """
            [default]
            aws_access_key_id = DEFAULTKEY
            aws_secret_access_key = defaultsecret

            [dr]
            aws_access_key_id = DRKEY
            aws_secret_access_key = drsecret
            aws_session_token = drtoken
            """)
        let config = try sandbox.file("config", """
            [default]
            region = eu-west-1
            [profile dr]
            region = us-west-2
            """)
        let files = ["AWS_SHARED_CREDENTIALS_FILE": credentials, "AWS_CONFIG_FILE": config, "HOME": sandbox.root]

        let plain = try S3Settings.resolve(url: "s3://my-backups/prod/main/", overrides: AWSAccountOverrides(), environment: files)
        #expect(plain.bucket == "my-backups" && plain.prefix == "prod/main/")
        #expect(plain.accessKeyID == "DEFAULTKEY" && plain.region == "eu-west-1")
        #expect(plain.endpoint.absoluteString == "https://s3.eu-west-1.amazonaws.com" && !plain.pathStyle)

        let profile = try S3Settings.resolve(url: "s3://my-backups", overrides: AWSAccountOverrides(), environment: files.merging(["AWS_PROFILE": "dr"]) { $1 })
        #expect(profile.accessKeyID == "DRKEY" && profile.sessionToken == "drtoken" && profile.region == "us-west-2")
        #expect(profile.prefix == "")

        let env = try S3Settings.resolve(url: "s3://my-backups/x", overrides: AWSAccountOverrides(), environment: files.merging([
            "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_REGION": "ap-south-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001",
        ]) { $1 })
        #expect(env.accessKeyID == "ENVKEY" && env.region == "ap-south-1")
        #expect(env.endpoint.absoluteString == "http://127.0.0.1:9001" && env.pathStyle, "the S3-specific endpoint wins; custom endpoints use path style")

        let explicit = try S3Settings.resolve(url: "s3://my-backups", overrides: AWSAccountOverrides(region: "sa-east-1",
            endpoint: "https://minio.internal", accessKeyID: "CFGKEY", secretAccessKey: "s"), pathStyle: false, environment: files.merging(["AWS_ACCESS_KEY_ID": "ENVKEY"]) { $1 })
        #expect(explicit.accessKeyID == "CFGKEY" && explicit.region == "sa-east-1" && !explicit.pathStyle)

        #expect(throws: LifeboatError.self) { try S3Settings.resolve(url: "s3://my-backups", overrides: AWSAccountOverrides(), environment: ["HOME": sandbox.root]) }
        #expect(throws: LifeboatError.self) { try S3Settings.resolve(url: "s3://ab", overrides: AWSAccountOverrides(), environment: files) }
        #expect(throws: LifeboatError.self) { try S3Settings.resolve(url: "/local/path", overrides: AWSAccountOverrides(), environment: files) }
    }
}
