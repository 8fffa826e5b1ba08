"""moto's server mode (PyPI `moto[server]`) as the local AWS KMS of the customer-key tests,
with the one behaviour of AWS KMS those tests need and moto lacks: a key's state is enforced.

moto 5.2 accepts Encrypt and Decrypt with a disabled key or one pending deletion; AWS KMS
refuses them (`DisabledException`, `KMSInvalidStateException`), and that refusal is how a
customer revokes the gateway's access to its key. This wraps moto's own KMS backend methods
with the state check, before the server starts; nothing else changes (requests are signed by
the official AWS SDK and parsed and answered by moto).

Usage: python moto_kms.py -H 127.0.0.1 -p PORT   (the arguments of `moto_server`)
"""

from moto.core.exceptions import JsonRESTError
from moto.kms import models
from moto.server import main


class DisabledException(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("DisabledException", message)


class KMSInvalidStateException(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("KMSInvalidStateException", message)


def _check_state(backend, any_id: str) -> None:
    key = backend.keys.get(backend.any_id_to_key_id(any_id))
    if key is None:
        return  # moto's own NotFoundException follows
    if key.key_state == "Disabled":
        raise DisabledException(f"{key.arn} is disabled.")
    if key.key_state != "Enabled":
        raise KMSInvalidStateException(f"{key.arn} is {key.key_state}.")


_encrypt = models.KmsBackend.encrypt
_decrypt = models.KmsBackend.decrypt


def encrypt(self, key_id, plaintext, encryption_context):
    _check_state(self, key_id)
    return _encrypt(self, key_id, plaintext, encryption_context)


def decrypt(self, ciphertext_blob, encryption_context, key_id=None):
    plaintext, arn = _decrypt(self, ciphertext_blob, encryption_context, key_id)
    # The key the ciphertext names, whatever the request called it.
    _check_state(self, arn)
    return plaintext, arn


models.KmsBackend.encrypt = encrypt
models.KmsBackend.decrypt = decrypt

if __name__ == "__main__":
    main()
